package model

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAllocateVIPs(t *testing.T) {
	mk := func(ns, name, vip string) *Service {
		return &Service{NamespacedName: NamespacedName{Namespace: ns, Name: name}, VIP: vip}
	}
	a := []*Service{mk("default", "catalog", ""), mk("default", "inventory", ""), mk("other", "catalog", ""), mk("default", "fixed", "10.96.0.10")}
	AllocateVIPs(a)
	seen := map[string]bool{}
	for _, s := range a[:3] {
		addr, err := netip.ParseAddr(s.VIP)
		if err != nil || !VIPRange.Contains(addr) {
			t.Errorf("%s: VIP %q not in %s", s.NamespacedName, s.VIP, VIPRange)
		}
		if seen[s.VIP] {
			t.Errorf("%s: VIP %s allocated twice", s.NamespacedName, s.VIP)
		}
		seen[s.VIP] = true
	}
	if a[3].VIP != "10.96.0.10" {
		t.Errorf("a given VIP must be kept, got %s", a[3].VIP)
	}
	// Stable: another config with more services gives the same VIPs to the same ones.
	b := []*Service{mk("default", "zzz", ""), mk("other", "catalog", ""), mk("default", "catalog", ""), mk("default", "inventory", "")}
	AllocateVIPs(b)
	got := map[string]string{}
	for _, s := range b {
		got[s.NamespacedName.String()] = s.VIP
	}
	for _, s := range a[:3] {
		if got[s.NamespacedName.String()] != s.VIP {
			t.Errorf("%s: VIP changed from %s to %s when services were added", s.NamespacedName, s.VIP, got[s.NamespacedName.String()])
		}
	}
}

func TestAllocateVIPsCollisions(t *testing.T) {
	var svcs []*Service
	for i := range 3000 {
		svcs = append(svcs, &Service{NamespacedName: NamespacedName{Namespace: "ns", Name: fmt.Sprintf("s%d", i)}})
	}
	AllocateVIPs(svcs)
	seen := map[string]bool{}
	for _, s := range svcs {
		if seen[s.VIP] {
			t.Fatalf("duplicate VIP %s", s.VIP)
		}
		seen[s.VIP] = true
		if s.VIP == "240.240.0.0" || s.VIP == "240.240.255.255" {
			t.Fatalf("network or broadcast address allocated: %s", s.VIP)
		}
	}
}

func TestParseLists(t *testing.T) {
	tests := []struct {
		in      string
		want    PortSet
		wantErr bool
	}{
		{"*", PortSet{All: true}, false},
		{"", PortSet{}, false},
		{"8080, 80,8080", PortSet{Ports: []int{80, 8080}}, false},
		{"0", PortSet{}, true},
		{"http", PortSet{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePortSet(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePortSet(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
			t.Errorf("ParsePortSet(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
	p, err := ParsePrefixSet("10.0.0.0/8, 192.168.1.7, 172.16.5.1/12")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := p.String(), "10.0.0.0/8,192.168.1.7/32,172.16.0.0/12"; got != want {
		t.Errorf("ParsePrefixSet = %s, want %s", got, want)
	}
	if _, err := ParsePrefixSet("fe80::/10"); err == nil {
		t.Error("IPv6 CIDR must be rejected (capture is IPv4 only)")
	}
}

func FuzzParsePortSet(f *testing.F) {
	for _, s := range []string{"*", "", "1,2,3", "65535", "-1", " 80 , 443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePortSet(s)
		if err != nil {
			return
		}
		q, err := ParsePortSet(p.String())
		if err != nil || !cmp.Equal(p, q) {
			t.Fatalf("round trip %q -> %q -> %v, %v", s, p.String(), q, err)
		}
	})
}
