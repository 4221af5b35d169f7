package server

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"skein.dev/skein/internal/model"
	"skein.dev/skein/internal/xds/translate"
)

// pushCache holds what one mesh generation's push shares between nodes: the
// translation index (outbound clusters, load assignments and virtual hosts are built
// once and shared by every node's snapshot) and the content hash of each shared
// resource, so a resource held by 1,000 snapshots is marshalled for hashing once.
// It is owned by the push path: callers hold pushMu.
type pushCache struct {
	mesh   *model.Mesh
	index  *translate.Index
	hashes map[types.Resource][sha256.Size]byte
}

// indexFor returns the translation index of mesh, building it when the mesh changed.
// Callers hold pushMu.
func (s *Server) indexFor(mesh *model.Mesh) *translate.Index {
	if s.push.mesh != mesh || s.push.index == nil {
		s.push = pushCache{mesh: mesh, index: translate.NewIndex(mesh), hashes: map[types.Resource][sha256.Size]byte{}}
	}
	return s.push.index
}

// hashResources identifies the resources' content, so unchanged nodes are not
// re-pushed. Each resource's hash is memoised by pointer for the current mesh: shared
// resources are immutable. Callers hold pushMu.
func (s *Server) hashResources(res *translate.Resources) (string, error) {
	if s.push.hashes == nil {
		s.push.hashes = map[types.Resource][sha256.Size]byte{}
	}
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, group := range [][]types.Resource{res.Listeners, res.Routes, res.Clusters, res.Endpoints, res.Secrets} {
		for _, r := range group {
			sum, ok := s.push.hashes[r]
			if !ok {
				b, err := opts.Marshal(r)
				if err != nil {
					return "", fmt.Errorf("hash resources: %w", err)
				}
				sum = sha256.Sum256(b)
				s.push.hashes[r] = sum
			}
			h.Write(sum[:])
		}
		h.Write([]byte{'|'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
