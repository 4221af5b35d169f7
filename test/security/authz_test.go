package security

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// check is one request (or TCP connection) and the answer it must get: an HTTP status
// (403 comes with Envoy's body "RBAC: access denied"), or for TCP whether the
// connection carries data (allowed) or is closed (denied).
type check struct {
	name  string
	tcp   bool
	req   request
	want  int // HTTP status; TCP: allowed or denied
	audit bool
	// viaMTLS, when set, is the answer through the sleep sidecar over mTLS
	// (TestAuthorizationTableThroughSidecars), where it differs from plaintext's.
	viaMTLS int
}

const (
	allowed = 200
	denied  = 403
)

type group struct {
	name     string
	policies string
	checks   []check
}

func allowPolicy(name, spec string) string {
	return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name + ", namespace: foo}\nspec:\n" + spec + "\n---\n"
}

// authzTable is the authorization table: precedence, scope, every source and
// operation field with its not* twin, path wildcards, conditions, TCP vs HTTP.
var authzTable = []group{
	{name: "no policy", checks: []check{
		{name: "http allowed", req: request{path: "/anything"}, want: allowed},
		{name: "tcp allowed", tcp: true, want: allowed},
	}},
	{name: "empty spec denies all", policies: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\nspec: {}\n", checks: []check{
		{name: "http denied", want: denied},
		{name: "tcp denied", tcp: true, want: denied},
	}},
	{name: "no spec at all denies all", policies: "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\n", checks: []check{
		{name: "http denied", want: denied},
	}},
	{name: "allow rule {} allows all", policies: allowPolicy("allow-all", "  rules: [{}]"), checks: []check{
		{name: "http allowed", req: request{method: "DELETE", path: "/x"}, want: allowed},
		{name: "tcp allowed", tcp: true, want: allowed},
	}},
	{name: "policy in other namespace does not apply", policies: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: bar}\nspec: {}\n", checks: []check{
		{name: "http allowed", want: allowed},
	}},
	{name: "root namespace policy applies to every namespace", policies: "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: istio-system}\nspec: {selector: {matchLabels: {version: v1}}}\n", checks: []check{
		{name: "http denied", want: denied},
	}},
	{name: "selector not matching", policies: allowPolicy("other", "  selector: {matchLabels: {app: other}}"), checks: []check{
		{name: "http allowed", want: allowed},
	}},
	{name: "deny before allow", policies: allowPolicy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]") +
		allowPolicy("allow-some", "  rules: [{to: [{operation: {paths: [\"/admin*\", \"/public\"]}}]}]"), checks: []check{
		{name: "deny wins over allow", req: request{path: "/admin/x"}, want: denied},
		{name: "allowed by allow", req: request{path: "/public"}, want: allowed},
		{name: "no allow matches: denied", req: request{path: "/other"}, want: denied},
	}},
	{name: "audit records and does not decide", policies: allowPolicy("audit", "  action: AUDIT\n  rules: [{to: [{operation: {methods: [GET], paths: [\"/user/profile/*\"]}}]}]"), checks: []check{
		{name: "audited request passes", req: request{path: "/user/profile/me"}, want: allowed, audit: true},
		{name: "not audited passes", req: request{path: "/other"}, want: allowed},
	}},
	{name: "path wildcards", policies: allowPolicy("paths", "  rules: [{to: [{operation: {paths: [\"/exact\", \"/prefix/*\", \"*.png\"]}}]}]"), checks: []check{
		{name: "exact", req: request{path: "/exact"}, want: allowed},
		{name: "exact with query", req: request{path: "/exact?x=1"}, want: allowed},
		{name: "exact plus slash", req: request{path: "/exact/"}, want: denied},
		{name: "prefix", req: request{path: "/prefix/a/b"}, want: allowed},
		{name: "prefix without slash", req: request{path: "/prefix"}, want: denied},
		{name: "suffix", req: request{path: "/img/a.png"}, want: allowed},
		{name: "suffix other", req: request{path: "/img/a.jpg"}, want: denied},
		{name: "dot segments normalized in", req: request{path: "/prefix/../exact"}, want: allowed},
		{name: "dot segments normalized out", req: request{path: "/prefix/../admin"}, want: denied},
	}},
	{name: "path presence", policies: allowPolicy("any-path", "  rules: [{to: [{operation: {paths: [\"*\"]}}]}]"), checks: []check{
		{name: "any path", req: request{path: "/whatever"}, want: allowed},
	}},
	{name: "notPaths", policies: allowPolicy("not-private", "  rules: [{to: [{operation: {notPaths: [\"/private*\"]}}]}]"), checks: []check{
		{name: "public", req: request{path: "/public"}, want: allowed},
		{name: "private", req: request{path: "/private/x"}, want: denied},
	}},
	{name: "methods and notMethods", policies: allowPolicy("methods", "  rules: [{to: [{operation: {methods: [GET]}}, {operation: {notMethods: [GET, POST, DELETE]}}]}]"), checks: []check{
		{name: "GET by methods", req: request{method: "GET"}, want: allowed},
		{name: "POST by neither", req: request{method: "POST"}, want: denied},
		{name: "PUT by notMethods", req: request{method: "PUT"}, want: allowed},
		{name: "DELETE by neither", req: request{method: "DELETE"}, want: denied},
	}},
	{name: "hosts and notHosts", policies: allowPolicy("hosts", "  rules: [{to: [{operation: {hosts: [\"*.example.com\", \"exact.test\"], notHosts: [\"bad.example.com\"]}}]}]"), checks: []check{
		{name: "suffix host", req: request{host: "a.example.com"}, want: allowed},
		{name: "case-insensitive", req: request{host: "A.EXAMPLE.COM"}, want: allowed},
		{name: "notHosts", req: request{host: "bad.example.com"}, want: denied},
		{name: "exact host", req: request{host: "exact.test"}, want: allowed},
		{name: "other host", req: request{host: "other.test"}, want: denied},
	}},
	{name: "ports", policies: allowPolicy("ports", "  rules: [{to: [{operation: {ports: [\"8080\"]}}]}]"), checks: []check{
		{name: "http port allowed", want: allowed},
		{name: "tcp port denied", tcp: true, want: denied},
	}},
	{name: "notPorts in a DENY", policies: allowPolicy("deny-not-http", "  action: DENY\n  rules: [{to: [{operation: {notPorts: [\"8080\"]}}]}]"), checks: []check{
		{name: "http port allowed", want: allowed},
		{name: "tcp port denied", tcp: true, want: denied},
	}},
	{name: "ipBlocks", policies: allowPolicy("ip", "  rules: [{from: [{source: {ipBlocks: [\"127.0.0.0/8\"]}}]}]"), checks: []check{
		{name: "loopback allowed", want: allowed},
		{name: "tcp loopback allowed", tcp: true, want: allowed},
	}},
	{name: "notIpBlocks", policies: allowPolicy("not-ip", "  rules: [{from: [{source: {notIpBlocks: [\"127.0.0.1\"]}}]}]"), checks: []check{
		{name: "loopback denied", want: denied},
		{name: "tcp loopback denied", tcp: true, want: denied},
	}},
	{name: "remoteIpBlocks from x-forwarded-for", policies: allowPolicy("remote", "  rules: [{from: [{source: {remoteIpBlocks: [\"203.0.113.0/24\"]}}]}]"), checks: []check{
		{name: "xff in block", req: request{header: map[string]string{"X-Forwarded-For": "203.0.113.7"}}, want: allowed},
		{name: "no xff: peer address", want: denied},
		{name: "last xff hop counts", req: request{header: map[string]string{"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}}, want: allowed},
		{name: "earlier hops do not", req: request{header: map[string]string{"X-Forwarded-For": "203.0.113.9, 198.51.100.1"}}, want: denied},
	}},
	{name: "notRemoteIpBlocks", policies: allowPolicy("deny-remote", "  action: DENY\n  rules: [{from: [{source: {notRemoteIpBlocks: [\"127.0.0.1\", \"10.0.0.0/8\"]}}]}]"), checks: []check{
		{name: "peer address not denied", want: allowed},
		{name: "xff inside allowed", req: request{header: map[string]string{"X-Forwarded-For": "10.1.2.3"}}, want: allowed},
		{name: "xff outside denied", req: request{header: map[string]string{"X-Forwarded-For": "192.0.2.1"}}, want: denied},
	}},
	{name: "when request.headers", policies: allowPolicy("header", "  rules: [{when: [{key: \"request.headers[x-user]\", values: [alice, \"bob*\"], notValues: [bobby]}]}]"), checks: []check{
		{name: "exact value", req: request{header: map[string]string{"X-User": "alice"}}, want: allowed},
		{name: "prefix value", req: request{header: map[string]string{"X-User": "bob-2"}}, want: allowed},
		{name: "notValues", req: request{header: map[string]string{"X-User": "bobby"}}, want: denied},
		{name: "header missing", want: denied},
	}},
	{name: "when header presence", policies: allowPolicy("header-present", "  rules: [{when: [{key: \"request.headers[x-token]\", values: [\"*\"]}]}]"), checks: []check{
		{name: "present", req: request{header: map[string]string{"X-Token": "t"}}, want: allowed},
		{name: "absent", want: denied},
	}},
	{name: "when source.ip destination.ip destination.port", policies: allowPolicy("l4", "  rules: [{when: [{key: source.ip, values: [127.0.0.1]}, {key: destination.ip, values: [127.0.0.0/8]}, {key: destination.port, values: [\"8080\"]}]}]"), checks: []check{
		{name: "http on 8080 allowed", want: allowed},
		{name: "tcp on 9000 denied", tcp: true, want: denied},
	}},
	{name: "when source.ip notValues on tcp", policies: allowPolicy("l4-not", "  rules: [{when: [{key: source.ip, notValues: [127.0.0.1]}]}]"), checks: []check{
		{name: "tcp denied", tcp: true, want: denied},
	}},
	{name: "when connection.sni needs TLS", policies: allowPolicy("sni", "  rules: [{when: [{key: connection.sni, values: [\"*\"]}]}]"), checks: []check{
		{name: "plaintext has no sni", want: denied, viaMTLS: allowed}, // the caller's sidecar sends SNI
	}},
	{name: "L7-only ALLOW rule is dropped on TCP", policies: allowPolicy("get-only", "  rules: [{to: [{operation: {methods: [GET]}}]}]"), checks: []check{
		{name: "http GET allowed", want: allowed},
		{name: "http POST denied", req: request{method: "POST"}, want: denied},
		{name: "tcp denied: the rule allows nothing", tcp: true, want: denied},
	}},
	{name: "L7-only DENY rule is broader on TCP", policies: allowPolicy("deny-post", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST]}}]}]"), checks: []check{
		{name: "http GET allowed", want: allowed},
		{name: "http POST denied", req: request{method: "POST"}, want: denied},
		{name: "tcp denied: methods dropped", tcp: true, want: denied},
	}},
	{name: "DENY scoped by port spares TCP", policies: allowPolicy("deny-post-8080", "  action: DENY\n  rules: [{to: [{operation: {methods: [POST], ports: [\"8080\"]}}]}]"), checks: []check{
		{name: "http POST denied", req: request{method: "POST"}, want: denied},
		{name: "tcp allowed", tcp: true, want: allowed},
	}},
	{name: "requestPrincipals without a token", policies: allowPolicy("need-jwt", "  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]"), checks: []check{
		{name: "denied", want: denied},
	}},
	{name: "notRequestPrincipals deny without a token", policies: allowPolicy("deny-anon", "  action: DENY\n  rules: [{from: [{source: {notRequestPrincipals: [\"*\"]}}]}]"), checks: []check{
		{name: "denied", want: denied},
		{name: "tcp: request principals are HTTP only, the DENY covers all", tcp: true, want: denied},
	}},
	{name: "claims without a token", policies: allowPolicy("claims", "  rules: [{when: [{key: \"request.auth.claims[groups]\", values: [admin]}]}]"), checks: []check{
		{name: "denied", want: denied},
	}},
	{name: "principals need mTLS", policies: allowPolicy("principals", "  rules: [{from: [{source: {principals: [\"cluster.local/ns/default/sa/sleep\"]}}]}]"), checks: []check{
		{name: "plaintext denied", want: denied, viaMTLS: allowed}, // sleep is the principal
		{name: "tcp plaintext denied", tcp: true, want: denied, viaMTLS: allowed},
	}},
	{name: "notPrincipals deny plaintext", policies: allowPolicy("deny-not-principal", "  action: DENY\n  rules: [{from: [{source: {notPrincipals: [\"cluster.local/ns/default/sa/sleep\"]}}]}]"), checks: []check{
		{name: "plaintext denied", want: denied, viaMTLS: allowed}, // sleep is not "not sleep"
	}},
	{name: "namespaces need mTLS", policies: allowPolicy("ns", "  rules: [{from: [{source: {namespaces: [foo]}}]}]"), checks: []check{
		{name: "plaintext denied", want: denied},
	}},
	{name: "notNamespaces match plaintext", policies: allowPolicy("not-ns", "  rules: [{from: [{source: {notNamespaces: [bar]}}]}]"), checks: []check{
		{name: "plaintext allowed (no namespace is not bar)", want: allowed},
	}},
	{name: "serviceAccounts need mTLS", policies: allowPolicy("sa", "  rules: [{from: [{source: {serviceAccounts: [sleep]}}]}]"), checks: []check{
		{name: "plaintext denied", want: denied},
	}},
	{name: "notServiceAccounts in DENY", policies: allowPolicy("deny-not-sa", "  action: DENY\n  rules: [{from: [{source: {notServiceAccounts: [foo/sleep]}}]}]"), checks: []check{
		{name: "plaintext denied", want: denied},
	}},
	{name: "several ALLOW policies: any one suffices", policies: allowPolicy("a", "  rules: [{to: [{operation: {paths: [\"/a\"]}}]}]") + allowPolicy("b", "  rules: [{to: [{operation: {paths: [\"/b\"]}}]}]"), checks: []check{
		{name: "first", req: request{path: "/a"}, want: allowed},
		{name: "second", req: request{path: "/b"}, want: allowed},
		{name: "neither", req: request{path: "/c"}, want: denied},
	}},
	{name: "fields of a rule are ANDed", policies: allowPolicy("and", "  rules: [{to: [{operation: {methods: [GET], paths: [\"/x\"]}}], when: [{key: \"request.headers[x-a]\", values: [\"1\"]}]}]"), checks: []check{
		{name: "all match", req: request{path: "/x", header: map[string]string{"X-A": "1"}}, want: allowed},
		{name: "header missing", req: request{path: "/x"}, want: denied},
		{name: "wrong method", req: request{method: "PUT", path: "/x", header: map[string]string{"X-A": "1"}}, want: denied},
	}},
}

func TestAuthorizationTable(t *testing.T) {
	e := newEnv(t)
	total := 0
	for _, g := range authzTable {
		t.Run(g.name, func(t *testing.T) {
			e.t = t
			e.apply(g.policies)
			for _, c := range g.checks {
				total++
				t.Run(c.name, func(t *testing.T) {
					e.t = t
					if c.tcp {
						got := e.tcpAllowed()
						if got != (c.want == allowed) {
							t.Errorf("tcp allowed = %v, want %v", got, c.want == allowed)
						}
						return
					}
					before := e.metric("skein_rbac_decisions_total", map[string]string{"result": "logged"})
					code, body := e.do(c.req)
					if code != c.want {
						t.Errorf("%s %s host=%q: status %d, want %d (body %q)", c.req.method, c.req.path, c.req.host, code, c.want, body)
					}
					if c.want == denied && body != "RBAC: access denied" {
						t.Errorf("body = %q, want %q", body, "RBAC: access denied")
					}
					after := e.metric("skein_rbac_decisions_total", map[string]string{"result": "logged"})
					if c.audit != (after > before) {
						t.Errorf("audited = %v, want %v", after > before, c.audit)
					}
				})
			}
		})
	}
	e.t = t
	if total < 40 {
		t.Errorf("table has %d cases, want at least 40", total)
	}
	t.Logf("%d authorization cases", total)
}

// TestAuthorizationTableThroughSidecars runs the same table as a mesh call: the test
// calls the sleep workload's sidecar (default/sleep), which reaches httpbin's sidecar
// over mutual TLS with a certificate from the CA (CSR with a bootstrap credential),
// as `skein up` wires them; all three proxies are configured over xDS by the control
// plane. Requests naming another host are left out: the caller's sidecar routes by
// host, so they never reach httpbin (as in Istio). A few answers differ from the
// plaintext pass because the caller now has an identity; those checks say so.
func TestAuthorizationTableThroughSidecars(t *testing.T) {
	m := newMTLSEnv(t)
	base := "http://127.0.0.1:" + strconv.Itoa(m.clients["sleep"].UpstreamPorts["httpbin.foo.svc.cluster.local:8000"])
	total := 0
	for _, g := range authzTable {
		t.Run(g.name, func(t *testing.T) {
			m.t = t
			m.apply(clientsConfig + "\n---\n" + g.policies)
			for _, c := range g.checks {
				if c.req.host != "" {
					continue
				}
				want := c.want
				if c.viaMTLS != 0 {
					want = c.viaMTLS
				}
				total++
				t.Run(c.name, func(t *testing.T) {
					m.t = t
					if c.tcp {
						if got := m.tcpVia("sleep"); got != (want == allowed) {
							t.Errorf("tcp through sleep's sidecar allowed = %v, want %v", got, want == allowed)
						}
						return
					}
					before := m.metric("skein_rbac_decisions_total", map[string]string{"result": "logged"})
					req := c.req
					req.host = "httpbin.foo.svc.cluster.local:8000"
					code, body := m.send(base, req)
					if code != want {
						t.Errorf("%s %s through sleep's sidecar: status %d, want %d (body %q)", c.req.method, c.req.path, code, want, body)
					}
					if want == denied && body != "RBAC: access denied" {
						t.Errorf("body = %q, want %q", body, "RBAC: access denied")
					}
					after := m.metric("skein_rbac_decisions_total", map[string]string{"result": "logged"})
					if c.audit != (after > before) {
						t.Errorf("audited = %v, want %v", after > before, c.audit)
					}
				})
			}
		})
	}
	m.t = t
	if total < 40 {
		t.Errorf("%d cases through sidecars, want at least 40", total)
	}
	t.Logf("%d authorization cases through two sidecars over mTLS", total)
}

// TestBadPolicyKeepsPreviousOne: a policy the loader rejects names file, line and
// field, and the proxy keeps enforcing the last good one.
func TestBadPolicyKeepsPreviousOne(t *testing.T) {
	e := newEnv(t)
	e.apply(allowPolicy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin\"]}}]}]"))
	if code, _ := e.do(request{path: "/admin"}); code != denied {
		t.Fatalf("before: /admin status %d, want 403", code)
	}
	_, err := load(t, allowPolicy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {ports: [\"http\"]}}]}]"))
	if err == nil {
		t.Fatal("bad policy accepted")
	}
	if want := `policies.yaml:23:38: AuthorizationPolicy foo/deny-admin: spec.rules[0].to[0].operation.ports[0]: "http" is not a port number (0-65535)`; !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v\nwant it to contain %s", err, want)
	}
	// Nothing was pushed: the previous policy is still enforced.
	if code, _ := e.do(request{path: "/admin"}); code != denied {
		t.Errorf("after the bad edit: /admin status %d, want 403", code)
	}
	if code, _ := e.do(request{path: "/ok"}); code != http.StatusOK {
		t.Errorf("after the bad edit: /ok status %d, want 200", code)
	}
}
