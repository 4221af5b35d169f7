package api

import (
	"context"
	"net/http"
	"net/url"

	"skein.dev/skein/internal/model"
)

// ObjectsBackend is a Backend that shows config objects with their status (`skein
// get`); GET /api/objects answers 404 for backends that do not.
type ObjectsBackend interface {
	// Objects returns the objects of a kind (all kinds when empty), in config order,
	// with their status as of the last accepted config.
	Objects(kind string) []*model.Object
}

func registerObjects(mux *http.ServeMux, b Backend) {
	mux.HandleFunc("GET /api/objects", func(w http.ResponseWriter, r *http.Request) {
		ob, ok := b.(ObjectsBackend)
		if !ok {
			http.Error(w, "this backend does not show objects", http.StatusNotFound)
			return
		}
		q := r.URL.Query()
		out := []*model.Object{}
		for _, o := range ob.Objects(q.Get("kind")) {
			if ns := q.Get("namespace"); ns != "" && o.Name.Namespace != ns && o.Name.Namespace != "" {
				continue
			}
			if n := q.Get("name"); n != "" && o.Name.Name != n {
				continue
			}
			out = append(out, o)
		}
		writeJSON(w, http.StatusOK, out)
	})
}

// Objects fetches config objects of a kind; namespace and name may be empty (all).
func (c *Client) Objects(ctx context.Context, kind, namespace, name string) ([]*model.Object, error) {
	var out []*model.Object
	q := url.Values{"kind": {kind}, "namespace": {namespace}, "name": {name}}
	err := c.get(ctx, "/api/objects?"+q.Encode(), &out)
	return out, err
}
