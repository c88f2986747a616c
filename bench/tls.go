package bench

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"time"
)

// The bare relay's TLS mirrors what protocol.Server generates and what
// protocol.WithFingerprint checks (protocol/internal/transport, which Go's
// internal-package rule keeps out of reach here): a self-signed ECDSA
// P-256 certificate and a client that pins its SHA-256. Same key type,
// same handshake cost, same record cipher.

// selfSigned creates a 13-day self-signed ECDSA P-256 certificate for
// 127.0.0.1 and returns it with its SHA-256 fingerprint.
func selfSigned() (tls.Certificate, [32]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(now.UnixNano()),
		Subject:               pkix.Name{CommonName: "127.0.0.1", Organization: []string{"moqbridge"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(13 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, [32]byte{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, sha256.Sum256(der), nil
}

// pinnedTLS accepts exactly the certificate whose SHA-256 is fp.
func pinnedTLS(fp [32]byte) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Self-signed: the standard verification cannot succeed; the pin
		// below is the real check.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("bench: relay sent no certificate")
			}
			if got := sha256.Sum256(raw[0]); !bytes.Equal(got[:], fp[:]) {
				return errors.New("bench: relay certificate does not match the pinned fingerprint")
			}
			return nil
		},
	}
}
