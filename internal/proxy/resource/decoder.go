package resource

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"skein.dev/skein/internal/proxy/validate"
)

// Decoder validates and unmarshals resources. It is immutable and safe for concurrent use.
type Decoder struct {
	allow *validate.Allowlist
	opts  DecoderOptions
}

// NewDecoder returns a Decoder enforcing the docs/XDS.md subset.
func NewDecoder() *Decoder { return &Decoder{allow: Allowlist()} }

// NewDecoderWith returns a Decoder with options.
func NewDecoderWith(opts DecoderOptions) *Decoder { return &Decoder{allow: Allowlist(), opts: opts} }

var errMissing = errors.New("missing")

func socketAddress(a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", fmt.Errorf("address.socket_address: %w", errMissing)
	}
	if sa.GetAddress() == "" {
		return "", fmt.Errorf("address.socket_address.address: %w", errMissing)
	}
	if sa.GetPortValue() > 65535 {
		return "", fmt.Errorf("address.socket_address.port_value %d out of range", sa.GetPortValue())
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}

func checkADS(cs *corev3.ConfigSource, field string) error {
	if cs.GetAds() == nil {
		return fmt.Errorf("%s: only ads{} config sources are supported", field)
	}
	return nil
}
