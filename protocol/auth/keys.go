package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// keyKind is the family of a key; it decides which algorithms fit it.
type keyKind int

const (
	kindHMAC keyKind = iota + 1
	kindEC
	kindEd25519
)

// keyFormat is what a key file turned out to hold.
type keyFormat int

const (
	formatSecret keyFormat = iota + 1 // raw HMAC secret bytes
	formatJWK                         // one JWK (JSON or base64url-encoded JSON)
	formatJWKSet                      // {"keys":[…]}
	formatPEM                         // one or more PEM blocks
)

// key is one signing or verification key.
type key struct {
	file   string    // the file it was loaded from, as given
	format keyFormat // what that file holds

	kid  string // JWK "kid"; "" when the file gives none
	alg  string // JWK "alg"; "" when unspecified
	kind keyKind

	secret []byte             // kindHMAC
	ecPub  *ecdsa.PublicKey   // kindEC
	ecPriv *ecdsa.PrivateKey  // kindEC, nil for a public key
	edPub  ed25519.PublicKey  // kindEd25519
	edPriv ed25519.PrivateKey // kindEd25519, nil for a public key

	// sign and verify are what the JWK's "key_ops" allow (both when
	// absent); signing further needs a private or secret part.
	sign, verify bool
}

// Algorithms moqbridge signs and verifies.
const (
	algHS256 = "HS256"
	algHS384 = "HS384"
	algHS512 = "HS512"
	algES256 = "ES256"
	algES384 = "ES384"
	algEdDSA = "EdDSA"
)

// curveAlg maps a supported EC curve to its JWS algorithm, JWK name and
// coordinate size in bytes.
func curveAlg(c elliptic.Curve) (alg, crv string, size int, ok bool) {
	switch c {
	case elliptic.P256():
		return algES256, "P-256", 32, true
	case elliptic.P384():
		return algES384, "P-384", 48, true
	}
	return "", "", 0, false
}

// accepts reports whether a token signed with alg may be checked against k.
// This is the guard against algorithm confusion: an HMAC algorithm is never
// accepted for an EC or Ed25519 key, whatever bytes the key file holds.
func (k *key) accepts(alg string) bool {
	if !k.verify {
		return false
	}
	switch k.kind {
	case kindHMAC:
		if k.alg != "" {
			return alg == k.alg
		}
		// RFC 7518 §3.2: the key must be at least as long as the hash.
		n := hmacMinSize(alg)
		return n > 0 && len(k.secret) >= n
	case kindEC:
		want, _, _, _ := curveAlg(k.ecPub.Curve)
		return alg == want
	case kindEd25519:
		return alg == algEdDSA
	}
	return false
}

// verifier is the key in the form the jwt package verifies with.
func (k *key) verifier() jwt.VerificationKey {
	switch k.kind {
	case kindHMAC:
		return k.secret
	case kindEC:
		return k.ecPub
	default:
		return k.edPub
	}
}

// canSign reports whether k holds a private or secret part it may sign with.
func (k *key) canSign() bool {
	if !k.sign {
		return false
	}
	switch k.kind {
	case kindHMAC:
		return len(k.secret) > 0
	case kindEC:
		return k.ecPriv != nil
	default:
		return k.edPriv != nil
	}
}

// signer returns the signing method and key Mint uses for k.
func (k *key) signer() (jwt.SigningMethod, any) {
	switch k.kind {
	case kindHMAC:
		switch k.alg {
		case algHS384:
			return jwt.SigningMethodHS384, k.secret
		case algHS512:
			return jwt.SigningMethodHS512, k.secret
		}
		return jwt.SigningMethodHS256, k.secret
	case kindEC:
		if alg, _, _, _ := curveAlg(k.ecPub.Curve); alg == algES384 {
			return jwt.SigningMethodES384, k.ecPriv
		}
		return jwt.SigningMethodES256, k.ecPriv
	default:
		return jwt.SigningMethodEdDSA, k.edPriv
	}
}

// decodeBase64JSON decodes text as base64url (padded or not) and reports
// whether the result is a JSON object.
func decodeBase64JSON(text []byte) ([]byte, bool) {
	s := strings.TrimRight(string(text), "=")
	decoded, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	decoded = bytes.TrimSpace(decoded)
	if len(decoded) == 0 || decoded[0] != '{' || !json.Valid(decoded) {
		return nil, false
	}
	return decoded, true
}

// jwkMembers are the members that make a JSON object a (possibly broken)
// JWK rather than some other JSON document.
var jwkMembers = []string{"kty", "k", "crv", "x", "y", "d", "n", "e", "alg", "kid", "use", "key_ops"}

// jwk is the JSON form of the keys moqbridge reads and writes.
type jwk struct {
	Kty    string   `json:"kty"`
	Crv    string   `json:"crv,omitempty"`
	Alg    string   `json:"alg,omitempty"`
	Kid    string   `json:"kid,omitempty"`
	Use    string   `json:"use,omitempty"`
	KeyOps []string `json:"key_ops,omitempty"`
	X      string   `json:"x,omitempty"`
	Y      string   `json:"y,omitempty"`
	D      string   `json:"d,omitempty"`
	K      string   `json:"k,omitempty"`
}

// parseJWKJSON parses a JWK or a JWK set.
func parseJWKJSON(text []byte) ([]*key, keyFormat, error) {
	if !json.Valid(text) {
		var v any
		err := json.Unmarshal(text, &v)
		return nil, 0, fmt.Errorf("invalid JSON: %w", err)
	}
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(text, &probe); err != nil {
		return nil, 0, errors.New("JSON, but not an object: not a JWK or JWK set")
	}
	set, ok := probe["keys"]
	if !ok {
		if !slices.ContainsFunc(jwkMembers, func(m string) bool { _, ok := probe[m]; return ok }) {
			return nil, 0, errors.New(`JSON, but not a JWK or JWK set (no "kty" or "keys" member)`)
		}
		k, err := parseJWK(text)
		if err != nil {
			return nil, 0, err
		}
		return []*key{k}, formatJWK, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(set, &raws); err != nil {
		return nil, 0, errors.New(`JWK set: "keys" is not an array`)
	}
	if len(raws) == 0 {
		return nil, 0, errors.New("JWK set is empty")
	}
	keys := make([]*key, 0, len(raws))
	for i, raw := range raws {
		k, err := parseJWK(raw)
		if err != nil {
			return nil, 0, fmt.Errorf("JWK set: key %d: %w", i, err)
		}
		keys = append(keys, k)
	}
	return keys, formatJWKSet, nil
}

// parseJWK parses one JWK: kty "oct" (a missing kty with a "k" also means
// oct), "EC" on P-256 or P-384, or "OKP" on Ed25519.
func parseJWK(raw []byte) (*key, error) {
	var j jwk
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, fmt.Errorf("invalid JWK: %w", err)
	}
	k := &key{kid: j.Kid, alg: j.Alg, sign: true, verify: true}
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf(`JWK %s: "use" is %q, not "sig"`, kidName(j.Kid), j.Use)
	}
	if j.KeyOps != nil {
		k.sign = slices.Contains(j.KeyOps, "sign")
		k.verify = slices.Contains(j.KeyOps, "verify")
		if !k.sign && !k.verify {
			return nil, fmt.Errorf(`JWK %s: "key_ops" allows neither "sign" nor "verify"`, kidName(j.Kid))
		}
	}
	kty := j.Kty
	if kty == "" && j.K != "" {
		kty = "oct"
	}
	var err error
	switch kty {
	case "oct":
		err = k.parseOct(j)
	case "EC":
		err = k.parseEC(j)
	case "OKP":
		err = k.parseOKP(j)
	case "RSA":
		err = errors.New("RSA keys are not supported (use an oct, EC P-256/P-384 or Ed25519 key)")
	case "":
		err = errors.New(`missing "kty"`)
	default:
		err = fmt.Errorf("unsupported kty %q", kty)
	}
	if err != nil {
		return nil, fmt.Errorf("JWK %s: %w", kidName(j.Kid), err)
	}
	return k, nil
}

func kidName(kid string) string {
	if kid == "" {
		return "(no kid)"
	}
	return fmt.Sprintf("%q", kid)
}

func (k *key) parseOct(j jwk) error {
	switch j.Alg {
	case "", algHS256, algHS384, algHS512:
	default:
		return fmt.Errorf("alg %q does not fit an oct key (want HS256, HS384 or HS512)", j.Alg)
	}
	if j.K == "" {
		return errors.New(`oct key without "k"`)
	}
	secret, err := decodeField("k", j.K)
	if err != nil {
		return err
	}
	if len(secret) == 0 {
		return errors.New(`"k" is empty`)
	}
	alg, min := j.Alg, hmacMinSize(j.Alg)
	if alg == "" {
		alg, min = "HMAC", MinSecretSize
	}
	if len(secret) < min {
		return fmt.Errorf(`"k" is %d bytes; %s needs at least %d (RFC 7518 §3.2)`, len(secret), alg, min)
	}
	k.kind = kindHMAC
	k.secret = secret
	return nil
}

func (k *key) parseEC(j jwk) error {
	var curve elliptic.Curve
	switch j.Crv {
	case "P-256":
		curve = elliptic.P256()
	case "P-384":
		curve = elliptic.P384()
	case "":
		return errors.New(`EC key without "crv"`)
	default:
		return fmt.Errorf("unsupported EC curve %q (want P-256 or P-384)", j.Crv)
	}
	alg, _, size, _ := curveAlg(curve)
	if j.Alg != "" && j.Alg != alg {
		return fmt.Errorf("alg %q does not fit an EC %s key (want %s)", j.Alg, j.Crv, alg)
	}
	x, err := decodeFixed("x", j.X, size)
	if err != nil {
		return err
	}
	y, err := decodeFixed("y", j.Y, size)
	if err != nil {
		return err
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, slices.Concat([]byte{4}, x, y))
	if err != nil {
		return fmt.Errorf("x/y are not a point on %s: %w", j.Crv, err)
	}
	k.kind = kindEC
	k.ecPub = pub
	if j.D == "" {
		return nil
	}
	d, err := decodeFixed("d", j.D, size)
	if err != nil {
		return err
	}
	priv, err := ecdsa.ParseRawPrivateKey(curve, d)
	if err != nil {
		return fmt.Errorf("invalid private key d: %w", err)
	}
	if !priv.PublicKey.Equal(pub) {
		return errors.New("private key d does not match x/y")
	}
	k.ecPriv = priv
	k.ecPub = &priv.PublicKey
	return nil
}

func (k *key) parseOKP(j jwk) error {
	if j.Crv != "Ed25519" {
		return fmt.Errorf("unsupported OKP curve %q (want Ed25519)", j.Crv)
	}
	if j.Alg != "" && j.Alg != algEdDSA && j.Alg != "Ed25519" {
		return fmt.Errorf("alg %q does not fit an Ed25519 key (want EdDSA)", j.Alg)
	}
	x, err := decodeFixed("x", j.X, ed25519.PublicKeySize)
	if err != nil {
		return err
	}
	k.kind = kindEd25519
	k.edPub = ed25519.PublicKey(x)
	if j.D == "" {
		return nil
	}
	seed, err := decodeFixed("d", j.D, ed25519.SeedSize)
	if err != nil {
		return err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	if !k.edPub.Equal(priv.Public()) {
		return errors.New("private key d does not match x")
	}
	k.edPriv = priv
	return nil
}

// decodeField decodes a base64url JWK member, with or without padding.
func decodeField(name, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url: %w", name, err)
	}
	return b, nil
}

func decodeFixed(name, s string, size int) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("missing %q", name)
	}
	b, err := decodeField(name, s)
	if err != nil {
		return nil, err
	}
	if len(b) != size {
		return nil, fmt.Errorf("%q is %d bytes, want %d", name, len(b), size)
	}
	return b, nil
}

// parsePEM reads every key block of a PEM file. CERTIFICATE blocks are
// skipped (a file may hold a certificate beside its key), but a file with
// certificates and no key is refused: verifying with a certificate's key
// is possible, but a certificate given as a key file is far more often the
// TLS certificate passed by mistake.
func parsePEM(name string, text []byte) ([]*key, error) {
	var keys []*key
	certs := 0
	rest := text
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			certs++
			continue
		}
		k, err := pemKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		if k != nil {
			keys = append(keys, k)
		}
	}
	switch {
	case len(keys) > 0:
		return keys, nil
	case certs > 0:
		return nil, fmt.Errorf("a certificate, not a key; to verify tokens signed with its key, pass its public key (openssl x509 -pubkey -noout -in %s)", name)
	}
	return nil, errors.New("no PEM key block found")
}

func pemKey(block *pem.Block) (*key, error) {
	switch block.Type {
	case "PUBLIC KEY":
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return publicKey(pub)
	case "PRIVATE KEY":
		priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return privateKey(priv)
	case "EC PRIVATE KEY":
		priv, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		return privateKey(priv)
	case "EC PARAMETERS":
		return nil, nil // precedes an EC PRIVATE KEY in openssl's output
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported")
	case "RSA PRIVATE KEY", "RSA PUBLIC KEY":
		return nil, errRSA
	case "OPENSSH PRIVATE KEY":
		return nil, errors.New("OpenSSH key files are not supported (use a PKCS #8 PEM key or a JWK)")
	}
	return nil, errors.New("not a key (want PUBLIC KEY, PRIVATE KEY or EC PRIVATE KEY)")
}

var errRSA = errors.New("RSA keys are not supported (use an EC P-256/P-384 or Ed25519 key)")

func publicKey(pub any) (*key, error) {
	switch pub := pub.(type) {
	case *ecdsa.PublicKey:
		if _, _, _, ok := curveAlg(pub.Curve); !ok {
			return nil, fmt.Errorf("unsupported EC curve %s (want P-256 or P-384)", pub.Curve.Params().Name)
		}
		return &key{kind: kindEC, ecPub: pub, sign: true, verify: true}, nil
	case ed25519.PublicKey:
		return &key{kind: kindEd25519, edPub: pub, sign: true, verify: true}, nil
	case *rsa.PublicKey:
		return nil, errRSA
	}
	return nil, fmt.Errorf("unsupported public key type %T", pub)
}

func privateKey(priv any) (*key, error) {
	switch priv := priv.(type) {
	case *ecdsa.PrivateKey:
		k, err := publicKey(&priv.PublicKey)
		if err != nil {
			return nil, err
		}
		k.ecPriv = priv
		return k, nil
	case ed25519.PrivateKey:
		return &key{kind: kindEd25519, edPub: priv.Public().(ed25519.PublicKey), edPriv: priv, sign: true, verify: true}, nil
	case *rsa.PrivateKey:
		return nil, errRSA
	}
	return nil, fmt.Errorf("unsupported private key type %T", priv)
}

// toJWK renders k as a JWK; public drops the private part and limits
// key_ops to "verify".
func (k *key) toJWK(public bool) (jwk, error) {
	j := jwk{Kid: k.kid, KeyOps: []string{"sign", "verify"}}
	if public {
		j.KeyOps = []string{"verify"}
	}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k.kind {
	case kindHMAC:
		if public {
			return jwk{}, errors.New("an oct (HMAC) key has no public half: verifiers need the secret itself")
		}
		j.Kty, j.Alg, j.K = "oct", k.alg, b64(k.secret)
		if j.Alg == "" {
			j.Alg = algHS256
		}
	case kindEC:
		alg, crv, size, _ := curveAlg(k.ecPub.Curve)
		point, err := k.ecPub.Bytes()
		if err != nil {
			return jwk{}, err
		}
		j.Kty, j.Crv, j.Alg = "EC", crv, alg
		j.X, j.Y = b64(point[1:1+size]), b64(point[1+size:])
		if !public && k.ecPriv != nil {
			d, err := k.ecPriv.Bytes()
			if err != nil {
				return jwk{}, err
			}
			j.D = b64(d)
		}
	case kindEd25519:
		j.Kty, j.Crv, j.Alg, j.X = "OKP", "Ed25519", algEdDSA, b64(k.edPub)
		if !public && k.edPriv != nil {
			j.D = b64(k.edPriv.Seed())
		}
	}
	if !public && !k.canSign() {
		j.KeyOps = []string{"verify"}
	}
	return j, nil
}

// GenerateKey returns a new private key as a JWK (JSON) with a random
// 16-hex-digit "kid", "key_ops" ["sign","verify"] and the given "alg":
// HS256, HS384 or HS512 (an oct key of 32, 48 or 64 random bytes), ES256
// or ES384 (EC P-256 or P-384), or EdDSA (Ed25519). Tokens minted with it
// carry the kid in their header. Hand PublicJWK's output of an EC or
// Ed25519 key to verifiers; an HMAC key must be shared as is.
func GenerateKey(alg string) ([]byte, error) {
	var kid [8]byte
	if _, err := rand.Read(kid[:]); err != nil {
		return nil, err
	}
	k := &key{kid: hex.EncodeToString(kid[:]), alg: alg, sign: true, verify: true}
	switch alg {
	case algHS256, algHS384, algHS512:
		size := map[string]int{algHS256: 32, algHS384: 48, algHS512: 64}[alg]
		k.kind = kindHMAC
		k.secret = make([]byte, size)
		if _, err := rand.Read(k.secret); err != nil {
			return nil, err
		}
	case algES256, algES384:
		curve := elliptic.P256()
		if alg == algES384 {
			curve = elliptic.P384()
		}
		priv, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			return nil, err
		}
		k.kind, k.ecPriv, k.ecPub = kindEC, priv, &priv.PublicKey
	case algEdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		k.kind, k.edPriv, k.edPub = kindEd25519, priv, pub
	default:
		return nil, fmt.Errorf("auth: cannot generate a key for algorithm %q (want HS256, HS384, HS512, ES256, ES384 or EdDSA)", alg)
	}
	j, err := k.toJWK(false)
	if err != nil {
		return nil, err
	}
	return json.Marshal(j)
}

// PublicJWK returns the public half of a private EC or Ed25519 key, as a
// JWK with key_ops ["verify"] and the same kid and alg. The input may be a
// JWK (JSON or base64url-encoded JSON), a JWK set (the output is then a set
// too) or a PEM private key. HMAC (oct) keys have no public half and are
// refused.
func PublicJWK(private []byte) ([]byte, error) {
	keys, format, err := parseKeys("FILE", private)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	out := make([]jwk, 0, len(keys))
	for _, k := range keys {
		j, err := k.toJWK(true)
		if err != nil {
			return nil, fmt.Errorf("auth: JWK %s: %w", kidName(k.kid), err)
		}
		out = append(out, j)
	}
	if format == formatJWK || len(out) == 1 && format == formatPEM {
		return json.Marshal(out[0])
	}
	return json.Marshal(struct {
		Keys []jwk `json:"keys"`
	}{out})
}
