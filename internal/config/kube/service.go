package kube

import (
	"fmt"
	"net"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// Service translates a checked v1 Service. The namespace must already be defaulted.
// spec.clusterIP, when set, is the service's VIP (captured clients reach it there).
// Fields a Service may carry but skein has no use for (type ClusterIP,
// NodePort or LoadBalancer, sessionAffinity, ...) are accepted and ignored; fields that
// would change where traffic goes (type ExternalName, non-TCP ports) are rejected.
func Service(s *corev1.Service) (*model.Service, []strict.Issue) {
	var issues []strict.Issue
	fail := func(path, format string, args ...any) {
		issues = append(issues, strict.Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	out := &model.Service{
		NamespacedName: model.NamespacedName{Namespace: s.Namespace, Name: s.Name},
		Labels:         s.Labels,
		Selector:       s.Spec.Selector,
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		fail("spec.type", "type ExternalName is not supported yet by skein")
	}
	switch ip := s.Spec.ClusterIP; {
	case ip == "" || ip == corev1.ClusterIPNone:
		// Allocated from model.VIPRange by the loader.
	case net.ParseIP(ip) == nil || net.ParseIP(ip).To4() == nil:
		fail("spec.clusterIP", "clusterIP %q is not an IPv4 address", ip)
	default:
		out.VIP = net.ParseIP(ip).String()
	}
	if len(s.Spec.Ports) == 0 {
		fail("spec.ports", "at least one port is required")
	}
	names := map[string]int{}
	numbers := map[int32]int{}
	for i, p := range s.Spec.Ports {
		path := strict.Index("spec.ports", i)
		if p.Port < 1 || p.Port > 65535 {
			fail(strict.Field(path, "port"), "port %d out of range [1, 65535]", p.Port)
		} else if first, dup := numbers[p.Port]; dup {
			fail(strict.Field(path, "port"), "port %d is also spec.ports[%d]", p.Port, first)
		} else {
			numbers[p.Port] = i
		}
		switch {
		case p.Name == "" && len(s.Spec.Ports) > 1:
			fail(strict.Field(path, "name"), "name is required when a Service has more than one port")
		case p.Name != "":
			if msgs := validation.IsDNS1123Label(p.Name); len(msgs) > 0 {
				fail(strict.Field(path, "name"), "invalid port name %q: %s", p.Name, msgs[0])
			} else if first, dup := names[p.Name]; dup {
				fail(strict.Field(path, "name"), "name %q is also spec.ports[%d]", p.Name, first)
			} else {
				names[p.Name] = i
			}
		}
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			fail(strict.Field(path, "protocol"), "protocol %s is not supported yet by skein (only TCP)", p.Protocol)
		}
		sp := model.ServicePort{Name: p.Name, Port: int(p.Port)}
		appProtocol := ""
		if p.AppProtocol != nil {
			appProtocol = *p.AppProtocol
		}
		sp.Protocol = PortProtocol(p.Name, appProtocol)
		switch tp := p.TargetPort; {
		case tp.Type == intstr.String:
			if msgs := validation.IsValidPortName(tp.StrVal); len(msgs) > 0 {
				fail(strict.Field(path, "targetPort"), "invalid port name %q: %s", tp.StrVal, msgs[0])
			}
			sp.TargetPortName = tp.StrVal
		case tp.IntVal < 0 || tp.IntVal > 65535:
			fail(strict.Field(path, "targetPort"), "port %s out of range [1, 65535]", strconv.Itoa(int(tp.IntVal)))
		default:
			sp.TargetPort = int(tp.IntVal) // 0: same as port
		}
		out.Ports = append(out.Ports, sp)
	}
	return out, issues
}
