package config

import (
	"os"
	"testing"

	"skein.dev/skein/internal/model"
)

// FuzzPeerAuthentication loads arbitrary documents and, when they load, resolves every
// port's mTLS mode with Istio's precedence: no panic, and only valid modes come out.
func FuzzPeerAuthentication(f *testing.F) {
	for _, file := range []string{"testdata/security/input.yaml", "testdata/security-errors/input.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "default", uint16(8080))
	}
	f.Add([]byte("apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {selector: {matchLabels: {app: web}}, portLevelMtls: {\"0\": {mode: STRICT}}}\n"), "default", uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, ns string, port uint16) {
		mesh, err := LoadBytes("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, labels := range []map[string]string{nil, {"app": "web"}, {"app": "legacy"}} {
			switch mode := mesh.EffectivePeerAuthentication(ns, labels, int(port)); mode {
			case model.MTLSDisable, model.MTLSPermissive, model.MTLSStrict:
			default:
				t.Fatalf("EffectivePeerAuthentication = %q", mode)
			}
		}
		for _, pa := range mesh.PeerAuthentications {
			if len(pa.PortLevel) > 0 && len(pa.Selector) == 0 {
				t.Fatalf("portLevelMtls without selector was accepted: %+v", pa)
			}
			for p := range pa.PortLevel {
				if p < 1 || p > 65535 {
					t.Fatalf("port %d accepted", p)
				}
			}
		}
	})
}
