package upstream

import (
	"fmt"
	"math/bits"
	"net"
	"net/http"
	"strconv"
	"time"

	"skein.dev/skein/internal/proxy/resource"
)

// HashBased reports whether the cluster balances by request hash.
func (c *Cluster) HashBased() bool { return c.LB == resource.LBRingHash || c.LB == resource.LBMaglev }

// RequestHash computes a request's hash from a route's hash policies as Envoy does:
// the hash of each policy that finds its key is folded in (rotate left by one, then
// xor); a terminal policy that found its key ends the list. ok is false when no policy
// found a key (the balancer then picks at random). A cookie policy with a TTL whose
// cookie is absent generates one: its value is hashed, and setCookie is the
// Set-Cookie header value the response must carry so the client keeps it.
func RequestHash(policies []resource.HashPolicy, r *http.Request, now time.Time) (hash uint64, ok bool, setCookie string) {
	for _, p := range policies {
		var key string
		var found bool
		switch {
		case p.Header != "":
			if v := r.Header.Values(p.Header); len(v) > 0 {
				key, found = v[0], true
			} else if p.Header == "Host" && r.Host != "" {
				key, found = r.Host, true // :authority
			}
		case p.Cookie != nil:
			if c, err := r.Cookie(p.Cookie.Name); err == nil {
				key, found = c.Value, true
			} else if p.Cookie.HasTTL {
				key = fmt.Sprintf("%016x", HashString(r.RemoteAddr+"|"+strconv.FormatInt(now.UnixNano(), 10)))
				found = true
				setCookie = cookieHeader(p.Cookie, key)
			}
		case p.SourceIP:
			if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
				key, found = host, true
			} else if r.RemoteAddr != "" {
				key, found = r.RemoteAddr, true
			}
		case p.QueryParameter != "":
			if v, has := r.URL.Query()[p.QueryParameter]; has && len(v) > 0 {
				key, found = v[0], true
			}
		}
		if !found {
			continue
		}
		h := HashString(key)
		if ok {
			hash = bits.RotateLeft64(hash, 1) ^ h
		} else {
			hash, ok = h, true
		}
		if p.Terminal {
			break
		}
	}
	return hash, ok, setCookie
}

// cookieHeader is the Set-Cookie value Envoy writes for a generated hash cookie.
func cookieHeader(c *resource.HashCookie, value string) string {
	s := c.Name + `="` + value + `"`
	if c.TTL > 0 {
		s += "; Max-Age=" + strconv.FormatInt(int64(c.TTL/time.Second), 10)
	}
	if c.Path != "" {
		s += "; Path=" + c.Path
	}
	return s + "; HttpOnly"
}
