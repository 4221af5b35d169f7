// Package skein defines skein's own configuration kinds (skein.dev/v1alpha1) and turns
// them into the model.
package skein

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"skein.dev/skein/internal/config/kube"
	"skein.dev/skein/internal/config/strict"
	"skein.dev/skein/internal/model"
)

// APIVersion is the group/version of skein's own kinds.
const APIVersion = "skein.dev/v1alpha1"

// Workload is a process that `skein up` runs, with its sidecar: what a Pod template is
// on Kubernetes.
type Workload struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              WorkloadSpec `json:"spec"`
}

// WorkloadSpec is the body of a Workload.
type WorkloadSpec struct {
	// ServiceAccount names the workload's identity; "default" when empty.
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Replicas is how many copies run; 1 when unset, 0 stops them all.
	Replicas *int32 `json:"replicas,omitempty"`
	// Role is "gateway" for a gateway proxy without an app (Istio's ingress and egress
	// gateway deployments: Istio Gateways select it by its labels); empty for an app
	// with its sidecar.
	Role string `json:"role,omitempty"`
	// Command is the program and its arguments; required unless role is gateway.
	Command []string        `json:"command,omitempty"`
	Env     []EnvVar        `json:"env,omitempty"`
	Ports   []ContainerPort `json:"ports,omitempty"`
}

// EnvVar is one environment variable.
type EnvVar struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ContainerPort is a port the process listens on.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort"`
	// Protocol is TCP (the default); UDP is not meshed.
	Protocol    string `json:"protocol,omitempty"`
	AppProtocol string `json:"appProtocol,omitempty"`
}

// ToModel translates a checked Workload. The namespace must already be defaulted.
func ToModel(w *Workload) (*model.Workload, []strict.Issue) {
	var issues []strict.Issue
	fail := func(path, format string, args ...any) {
		issues = append(issues, strict.Issue{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	out := &model.Workload{
		NamespacedName: model.NamespacedName{Namespace: w.Namespace, Name: w.Name},
		Labels:         w.Labels,
		ServiceAccount: w.Spec.ServiceAccount,
		Replicas:       1,
		Command:        w.Spec.Command,
	}
	capture, captureIssues := captureOverrides(w.Annotations)
	out.Capture = capture
	issues = append(issues, captureIssues...)
	if out.ServiceAccount == "" {
		out.ServiceAccount = "default"
	} else if msgs := validation.IsDNS1123Subdomain(out.ServiceAccount); len(msgs) > 0 {
		fail("spec.serviceAccount", "invalid service account %q: %s", out.ServiceAccount, msgs[0])
	}
	if r := w.Spec.Replicas; r != nil {
		if *r < 0 {
			fail("spec.replicas", "replicas must be >= 0, got %d", *r)
		}
		out.Replicas = int(*r)
	}
	switch w.Spec.Role {
	case "", string(model.RoleSidecar):
		if len(w.Spec.Command) == 0 || w.Spec.Command[0] == "" {
			fail("spec.command", "command is required (the program to run and its arguments)")
		}
	case string(model.RoleGateway):
		out.Role = model.RoleGateway
		if len(w.Spec.Command) > 0 {
			fail("spec.command", "a gateway runs no command: remove command, or remove role: gateway")
		}
		if len(w.Spec.Ports) > 0 {
			fail("spec.ports", "a gateway has no app ports: its listeners come from the Gateways that select it")
		}
	default:
		fail("spec.role", "unknown role %q: want gateway, or leave it out", w.Spec.Role)
	}
	envs := map[string]int{}
	for i, e := range w.Spec.Env {
		path := strict.Index("spec.env", i)
		if msgs := validation.IsEnvVarName(e.Name); len(msgs) > 0 {
			fail(strict.Field(path, "name"), "invalid environment variable name %q: %s", e.Name, msgs[0])
		} else if first, dup := envs[e.Name]; dup {
			fail(strict.Field(path, "name"), "%s is also spec.env[%d]", e.Name, first)
		}
		envs[e.Name] = i
		out.Env = append(out.Env, model.EnvVar{Name: e.Name, Value: e.Value})
	}
	names := map[string]int{}
	numbers := map[int32]int{}
	for i, p := range w.Spec.Ports {
		path := strict.Index("spec.ports", i)
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			fail(strict.Field(path, "containerPort"), "port %d out of range [1, 65535]", p.ContainerPort)
		} else if first, dup := numbers[p.ContainerPort]; dup {
			fail(strict.Field(path, "containerPort"), "port %d is also spec.ports[%d]", p.ContainerPort, first)
		} else {
			numbers[p.ContainerPort] = i
		}
		if p.Name != "" {
			if msgs := validation.IsValidPortName(p.Name); len(msgs) > 0 {
				fail(strict.Field(path, "name"), "invalid port name %q: %s", p.Name, msgs[0])
			} else if first, dup := names[p.Name]; dup {
				fail(strict.Field(path, "name"), "name %q is also spec.ports[%d]", p.Name, first)
			} else {
				names[p.Name] = i
			}
		}
		protocol := strings.ToUpper(p.Protocol)
		if protocol == "" {
			protocol = "TCP"
		}
		if protocol != "TCP" {
			fail(strict.Field(path, "protocol"), "protocol %s is not supported yet by skein (only TCP)", p.Protocol)
		}
		cp := model.ContainerPort{Name: p.Name, ContainerPort: int(p.ContainerPort), Protocol: protocol}
		if p.AppProtocol != "" {
			ap, ok := kube.ParseProtocol(p.AppProtocol)
			if !ok {
				fail(strict.Field(path, "appProtocol"), "unknown appProtocol %q: use http, http2, h2c, grpc or tcp", p.AppProtocol)
			}
			cp.AppProtocol = ap
		}
		out.Ports = append(out.Ports, cp)
	}
	return out, issues
}
