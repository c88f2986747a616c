package auth

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"unicode/utf8"
)

// MinSecretSize is the shortest HMAC key accepted, in bytes: RFC 7518
// §3.2 requires a key at least as long as the hash, 32 bytes for HS256.
// HS384 and HS512 need 48 and 64.
const MinSecretSize = 32

// hmacMinSize is the shortest key for an HMAC algorithm, or 0 when alg is
// not one.
func hmacMinSize(alg string) int {
	switch alg {
	case algHS256:
		return 32
	case algHS384:
		return 48
	case algHS512:
		return 64
	}
	return 0
}

var (
	// ErrNotAKey is wrapped by the error for a key file that holds no JWK,
	// JWK set or PEM key and does not look like one either: most likely a
	// wrong path, or a raw HMAC secret, which must be given as one
	// (Config.SecretFiles, MintSecret).
	ErrNotAKey = errors.New("not a JWK or PEM key")
	// ErrNotASecret is wrapped by the error for a secret file that holds
	// (or looks like) a JWK, PEM or JSON document: its text would make a
	// guessable HMAC secret, and a public key's text one anybody could
	// sign with.
	ErrNotASecret = errors.New("not a raw secret")

	errEmpty = errors.New("the file is empty")
)

// KeyFileError is the error for a key or secret file that cannot be used.
type KeyFileError struct {
	File   string // as given
	Secret bool   // given as a raw HMAC secret file, not a key file
	Err    error  // what is wrong; may wrap ErrNotAKey or ErrNotASecret
}

func (e *KeyFileError) Error() string {
	kind := "key file"
	if e.Secret {
		kind = "secret file"
	}
	return fmt.Sprintf("auth: %s %s: %v", kind, e.File, e.Err)
}

func (e *KeyFileError) Unwrap() error { return e.Err }

// readKeyFile reads a key or secret file; the error is a *KeyFileError
// without the path repeated in it.
func readKeyFile(path string, secret bool) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, &KeyFileError{File: path, Secret: secret, Err: err}
	}
	return data, nil
}

// loadKeyFile reads and parses one key file (JWK, JWK set or PEM).
func loadKeyFile(path string) ([]*key, error) {
	data, err := readKeyFile(path, false)
	if err != nil {
		return nil, err
	}
	keys, format, err := parseKeys(path, data)
	if err != nil {
		return nil, &KeyFileError{File: path, Err: err}
	}
	for _, k := range keys {
		k.file, k.format = path, format
	}
	return keys, nil
}

// loadSecretFile reads one raw HMAC secret file.
func loadSecretFile(path string) (*key, error) {
	data, err := readKeyFile(path, true)
	if err != nil {
		return nil, err
	}
	k, err := parseSecret(path, data)
	if err != nil {
		return nil, &KeyFileError{File: path, Secret: true, Err: err}
	}
	k.file = path
	return k, nil
}

// parseKeys recognises a key file by its content; name is the file's name
// for hints in errors:
//
//   - text containing "-----BEGIN " is PEM: PUBLIC KEY (PKIX), PRIVATE KEY
//     (PKCS #8) or EC PRIVATE KEY (SEC 1) blocks holding EC P-256/P-384 or
//     Ed25519 keys; CERTIFICATE blocks are skipped, and a file of only
//     certificates is refused;
//   - text starting with '{' (or '[') is a JWK or a JWK set ({"keys":[…]});
//   - a single base64url word that decodes to a JSON object is a JWK (the
//     encoding moq-token writes its key files in);
//   - anything else is refused: an empty file, a DER-encoded key or
//     certificate (with a hint to convert it), and otherwise text or
//     binary data with an error wrapping ErrNotAKey.
func parseKeys(name string, data []byte) ([]*key, keyFormat, error) {
	text := bytes.TrimSpace(data)
	if len(text) == 0 {
		return nil, 0, errEmpty
	}
	if utf8.Valid(text) {
		switch {
		case bytes.Contains(text, []byte("-----BEGIN ")):
			keys, err := parsePEM(name, text)
			return keys, formatPEM, err
		case text[0] == '{' || text[0] == '[':
			return parseJWKJSON(text)
		}
		if decoded, ok := decodeBase64JSON(text); ok {
			keys, format, err := parseJWKJSON(decoded)
			if err != nil {
				return nil, 0, fmt.Errorf("base64url-encoded JWK: %w", err)
			}
			return keys, format, nil
		}
		if lines := bytes.Count(text, []byte("\n")) + 1; lines > 1 {
			return nil, 0, fmt.Errorf("%d lines of text, %w", lines, ErrNotAKey)
		}
		return nil, 0, ErrNotAKey
	}
	if what, convert := derKind(data); what != "" {
		return nil, 0, fmt.Errorf("a DER-encoded %s; moqbridge reads PEM (%s -inform DER -in %s)", what, convert, name)
	}
	return nil, 0, fmt.Errorf("binary data, %w", ErrNotAKey)
}

// derKind names what DER-encoded data holds, if it is a certificate or a
// key, and the openssl command that converts it to PEM.
func derKind(data []byte) (what, convert string) {
	if len(data) == 0 || data[0] != 0x30 { // an ASN.1 SEQUENCE
		return "", ""
	}
	if _, err := x509.ParseCertificate(data); err == nil {
		return "certificate, not a key", "openssl x509 -pubkey -noout"
	}
	if _, err := x509.ParsePKIXPublicKey(data); err == nil {
		return "public key", "openssl pkey -pubin"
	}
	if _, err := x509.ParsePKCS8PrivateKey(data); err == nil {
		return "private key", "openssl pkey"
	}
	if _, err := x509.ParseECPrivateKey(data); err == nil {
		return "private key", "openssl pkey"
	}
	return "", ""
}

// parseSecret reads a raw HMAC secret: the file's bytes less trailing
// newlines ("\n", "\r\n"), used as they are (text is not decoded from hex
// or base64), at least MinSecretSize bytes. A file that holds or looks
// like a key (PEM, JSON, a base64url-encoded JWK, a DER key or
// certificate) is refused with an error wrapping ErrNotASecret.
func parseSecret(name string, data []byte) (*key, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errEmpty
	}
	if _, format, err := parseKeys(name, data); err == nil {
		return nil, fmt.Errorf("%s, %w", formatArticle[format], ErrNotASecret)
	}
	if what := looksLike(data); what != "" {
		return nil, fmt.Errorf("%s, %w", what, ErrNotASecret)
	}
	secret := bytes.TrimRight(data, "\r\n")
	if len(secret) < MinSecretSize {
		return nil, fmt.Errorf("the secret is %d bytes; HMAC needs at least %d (RFC 7518 §3.2): make one with openssl rand -hex 32 > %s",
			len(secret), MinSecretSize, name)
	}
	return &key{kind: kindHMAC, format: formatSecret, secret: bytes.Clone(secret), sign: true, verify: true}, nil
}

// looksLike names the key format data is written in, even when it is
// not a usable key, or returns "".
func looksLike(data []byte) string {
	text := bytes.TrimSpace(data)
	if len(text) > 0 && utf8.Valid(text) {
		switch {
		case bytes.Contains(text, []byte("-----BEGIN ")):
			return "PEM text"
		case (text[0] == '{' || text[0] == '[') && json.Valid(text):
			return "JSON"
		}
		if _, ok := decodeBase64JSON(text); ok {
			return "base64url-encoded JSON"
		}
	}
	if what, _ := derKind(data); what != "" {
		return "a DER-encoded " + what
	}
	return ""
}

var formatArticle = map[keyFormat]string{
	formatSecret: "a secret",
	formatJWK:    "a JWK",
	formatJWKSet: "a JWK set",
	formatPEM:    "a PEM key",
}

var formatNames = map[keyFormat]string{
	formatSecret: "secret",
	formatJWK:    "JWK",
	formatJWKSet: "JWK set",
	formatPEM:    "PEM",
}

// KeyInfo describes one verification key an Authorizer holds.
type KeyInfo struct {
	// File is the key or secret file, as given.
	File string
	// Format is what the file holds: "JWK", "JWK set", "PEM" or "secret".
	Format string
	// Algs are the algorithms of the tokens the key verifies, e.g.
	// ["EdDSA"] or ["HS256", "HS384"] (an HMAC key without an "alg" takes
	// each algorithm its length allows).
	Algs []string
	// Kid is the key's id ("kid"), "" when it has none.
	Kid string
	// Private is true for the private half of an EC or Ed25519 key, which
	// a verifier does not need: the public half would do.
	Private bool
}

// algs lists the algorithms k accepts, in a fixed order.
func (k *key) algs() []string {
	var out []string
	for _, alg := range []string{algHS256, algHS384, algHS512, algES256, algES384, algEdDSA} {
		if k.accepts(alg) {
			out = append(out, alg)
		}
	}
	return out
}

// Keys describes the verification keys, in the order their files were
// given (key files first, then secret files) and, within a file, the
// order of the file.
func (a *Authorizer) Keys() []KeyInfo {
	out := make([]KeyInfo, 0, len(a.keys))
	for _, k := range a.keys {
		out = append(out, KeyInfo{
			File:    k.file,
			Format:  formatNames[k.format],
			Algs:    k.algs(),
			Kid:     k.kid,
			Private: k.ecPriv != nil || k.edPriv != nil,
		})
	}
	return out
}

// PublicPrefix returns the cleaned prefix open to connections without a
// token, and whether there is one.
func (a *Authorizer) PublicPrefix() (string, bool) {
	if a.public == nil {
		return "", false
	}
	return *a.public, true
}
