package transport

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestGenerateSelfSigned(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	cert, err := GenerateSelfSigned([]string{"relay.example", "192.0.2.7", "::1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		t.Fatal("Leaf not set")
	}
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d != 13*24*time.Hour {
		t.Errorf("validity = %v, want exactly 13 days", d)
	}
	if !leaf.NotBefore.Before(now) || !leaf.NotAfter.After(now) {
		t.Errorf("validity %v..%v does not contain now", leaf.NotBefore, leaf.NotAfter)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if _, ok := cert.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("private key %T, want ECDSA", cert.PrivateKey)
	}
	if !slices.Equal(leaf.DNSNames, []string{"relay.example"}) {
		t.Errorf("DNS SANs = %v", leaf.DNSNames)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("192.0.2.7")) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP SANs = %v", leaf.IPAddresses)
	}
	if err := leaf.VerifyHostname("relay.example"); err != nil {
		t.Error(err)
	}
	if Fingerprint(cert) != sha256.Sum256(cert.Certificate[0]) {
		t.Error("Fingerprint is not the SHA-256 of the leaf DER")
	}

	def, err := GenerateSelfSigned(nil, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		if err := def.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("default SANs: %v", err)
		}
	}
	if Fingerprint(def) == Fingerprint(cert) {
		t.Error("two certificates share a fingerprint")
	}
}

func TestLoadKeyPairNamesFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	_, err := LoadKeyPair(missing, missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error = %v, want it to name %s", err, missing)
	}
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadKeyPair(bad, bad)
	if err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("error = %v, want it to name %s", err, bad)
	}
}
