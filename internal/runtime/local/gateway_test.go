package local

import (
	"testing"

	"skein.dev/skein/internal/model"
)

func TestWithoutGatewayKeys(t *testing.T) {
	cfg := &model.Mesh{Gateways: []*model.Gateway{{Listeners: []model.GatewayListener{
		{Name: "https", TLS: &model.GatewayTLS{CertChain: "cert", Key: "secret key"}},
		{Name: "http"},
	}}}}
	got := withoutGatewayKeys(cfg)
	if k := got.Gateways[0].Listeners[0].TLS.Key; k != "" {
		t.Errorf("API mesh has key %q", k)
	}
	if got.Gateways[0].Listeners[0].TLS.CertChain != "cert" {
		t.Errorf("certificate dropped too")
	}
	if cfg.Gateways[0].Listeners[0].TLS.Key != "secret key" {
		t.Errorf("the shared mesh was modified")
	}
}
