package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// SelfSignedValidity is the total validity of GenerateSelfSigned
// certificates. Browsers refuse serverCertificateHashes pins on certificates
// valid for more than 14 days; 13 keeps a day of margin below that limit.
const SelfSignedValidity = 13 * 24 * time.Hour

// selfSignedBackdate starts validity before now so peers with a slightly
// slow clock accept a freshly generated certificate.
const selfSignedBackdate = time.Hour

// GenerateSelfSigned creates a self-signed ECDSA P-256 certificate, the only
// kind browsers accept for serverCertificateHashes. It is valid from now-1h
// for exactly SelfSignedValidity and names hosts (IP addresses and DNS names)
// as SANs; an empty list means localhost, 127.0.0.1 and ::1. Leaf is set.
func GenerateSelfSigned(hosts []string, now time.Time) (tls.Certificate, error) {
	if len(hosts) == 0 {
		hosts = []string{"localhost", "127.0.0.1", "::1"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: generate serial: %w", err)
	}
	notBefore := now.Add(-selfSignedBackdate).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hosts[0], Organization: []string{"moqbridge"}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Fingerprint is the SHA-256 of the leaf certificate's DER encoding, the
// value browsers pin via serverCertificateHashes and that @moq/lite clients
// fetch (hex-encoded) from /certificate.sha256. The zero array is returned
// for a certificate without a leaf.
func Fingerprint(cert tls.Certificate) [32]byte {
	if len(cert.Certificate) == 0 {
		return [32]byte{}
	}
	return sha256.Sum256(cert.Certificate[0])
}

// LoadKeyPair loads a PEM certificate chain and key, naming the offending
// file when one cannot be read.
func LoadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Stat(f); err != nil {
			return tls.Certificate{}, fmt.Errorf("transport: TLS file %q: %w", f, err)
		}
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("transport: load TLS key pair (cert %q, key %q): %w", certFile, keyFile, err)
	}
	return cert, nil
}

// PinnedTLSConfig returns a client configuration that accepts exactly the
// leaf certificate whose SHA-256 is fingerprint, regardless of its issuer,
// names or validity period: the pin replaces WebPKI verification, as
// serverCertificateHashes does in browsers.
func PinnedTLSConfig(fingerprint [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The standard verification cannot succeed for self-signed
		// certificates; VerifyPeerCertificate below does the real check.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if len(rawCerts) == 0 {
				return errors.New("transport: server sent no certificate")
			}
			got := sha256.Sum256(rawCerts[0])
			if !bytes.Equal(got[:], fingerprint[:]) {
				return fmt.Errorf("transport: server certificate SHA-256 %s does not match pinned %s",
					hex.EncodeToString(got[:]), hex.EncodeToString(fingerprint[:]))
			}
			return nil
		},
	}
}
