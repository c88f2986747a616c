package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var allAlgs = []string{"HS256", "HS384", "HS512", "ES256", "ES384", "EdDSA"}

func TestRoundTrip(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			priv, pub := genKey(t, alg)
			tok := mint(t, priv, Claims{
				Root:     "demo",
				Put:      []string{"alice"},
				Get:      []string{""},
				Expires:  time.Now().Add(time.Hour),
				IssuedAt: time.Now(),
			})
			h := header(t, tok)
			if h["alg"] != alg {
				t.Fatalf("header alg = %v, want %s", h["alg"], alg)
			}
			var j jwk
			data, _ := os.ReadFile(priv)
			if err := json.Unmarshal(data, &j); err != nil {
				t.Fatal(err)
			}
			if h["kid"] != j.Kid || j.Kid == "" {
				t.Fatalf("header kid = %v, want the key's %q", h["kid"], j.Kid)
			}
			want := Grant{Root: "demo", Publish: []string{"alice"}, Subscribe: []string{""}}
			// The verifier may hold the public key or the private one.
			for _, file := range []string{pub, priv} {
				a := newAuth(t, Config{KeyFiles: []string{file}})
				wantGrant(t, a, connURL("/demo", tok), want)
			}
		})
	}
}

func TestGeneratedKeyShape(t *testing.T) {
	for _, alg := range allAlgs {
		priv, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		var j jwk
		if err := json.Unmarshal(priv, &j); err != nil {
			t.Fatal(err)
		}
		if j.Alg != alg || len(j.Kid) != 16 || strings.Join(j.KeyOps, ",") != "sign,verify" {
			t.Errorf("%s: generated %s", alg, priv)
		}
		switch {
		case strings.HasPrefix(alg, "HS"):
			if j.Kty != "oct" || j.K == "" {
				t.Errorf("%s: generated %s", alg, priv)
			}
			if _, err := PublicJWK(priv); err == nil {
				t.Errorf("%s: PublicJWK of an oct key succeeded", alg)
			}
			continue
		case alg == "EdDSA":
			if j.Kty != "OKP" || j.Crv != "Ed25519" || j.X == "" || j.D == "" {
				t.Errorf("%s: generated %s", alg, priv)
			}
		default:
			if j.Kty != "EC" || j.X == "" || j.Y == "" || j.D == "" {
				t.Errorf("%s: generated %s", alg, priv)
			}
		}
		pubJSON, err := PublicJWK(priv)
		if err != nil {
			t.Fatal(err)
		}
		var p jwk
		if err := json.Unmarshal(pubJSON, &p); err != nil {
			t.Fatal(err)
		}
		if p.D != "" || p.K != "" || p.Kid != j.Kid || p.Alg != alg || p.X != j.X || p.Y != j.Y ||
			strings.Join(p.KeyOps, ",") != "verify" {
			t.Errorf("%s: public half %s of %s", alg, pubJSON, priv)
		}
		// A public key cannot mint.
		if _, err := Mint(writeFile(t, "pub.jwk", pubJSON), Claims{Put: []string{""}}); err == nil ||
			!strings.Contains(err.Error(), "no private or secret key") {
			t.Errorf("%s: Mint with a public key: %v", alg, err)
		}
	}
	if _, err := GenerateKey("RS256"); err == nil {
		t.Error("GenerateKey(RS256) succeeded")
	}
}

// Keys and tokens produced by the reference moq-token CLI (its own interop
// fixtures), so moqbridge verifies what that implementation signs.
const (
	refHS256Key   = `{"alg":"HS256","key_ops":["verify","sign"],"kty":"oct","k":"jvS2B_SKkvhtObaiKg9n2vq_Iqdus-nVCVVYBWf0BQA","kid":"d55b1f13e6bda281"}`
	refHS256Token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiIsImtpZCI6ImQ1NWIxZjEzZTZiZGEyODEifQ.eyJyb290IjoiZGVtbyIsInB1dCI6WyJhbGljZSJdLCJnZXQiOlsiYm9iIl19.eyOkZtTtj_MDkLF4Eu11cygb7B_6DyP-6e0TtwVE4UE"
	refEdPrivate  = `{"alg":"EdDSA","key_ops":["sign","verify"],"kty":"OKP","crv":"Ed25519","x":"S9n3tEG677fSNpa0Ftf46OPBte5y1pTwvm4fPkEw_Z8","d":"EhFsuE3CFkJoQpZCT2Wwr6YF7ZwjsaEIgbwO4Uc4b5U","kid":"dfab9113ea85dc27"}`
	refEdPublic   = `{"alg":"EdDSA","key_ops":["verify"],"kty":"OKP","crv":"Ed25519","x":"S9n3tEG677fSNpa0Ftf46OPBte5y1pTwvm4fPkEw_Z8","kid":"dfab9113ea85dc27"}`
	refEdToken    = "eyJ0eXAiOiJKV1QiLCJhbGciOiJFZERTQSIsImtpZCI6ImRmYWI5MTEzZWE4NWRjMjcifQ.eyJyb290Ijoicm9vbSIsInB1dCI6WyJzdHJlYW0xIiwic3RyZWFtMiJdLCJnZXQiOlsiZmVlZDEiXX0.jezhAgTHQHdYkc15CBZP8zPKKJ0z5oVRwON4wPHeQ6xvIhoM5IkCs_4YRCEoG74t99pdVTQrwAMNrlfKm2O6DA"
)

func TestReferenceFixtures(t *testing.T) {
	hs := newAuth(t, Config{KeyFiles: []string{writeFile(t, "hs.jwk", []byte(refHS256Key))}})
	wantGrant(t, hs, connURL("/demo", refHS256Token), Grant{Root: "demo", Publish: []string{"alice"}, Subscribe: []string{"bob"}})

	// moq-token writes key files as base64url-encoded JSON.
	b64 := base64.RawURLEncoding.EncodeToString([]byte(refHS256Key))
	hs64 := newAuth(t, Config{KeyFiles: []string{writeFile(t, "hs.b64", []byte(b64+"\n"))}})
	wantGrant(t, hs64, connURL("/demo", refHS256Token), Grant{Root: "demo", Publish: []string{"alice"}, Subscribe: []string{"bob"}})

	for _, k := range []string{refEdPublic, refEdPrivate} {
		ed := newAuth(t, Config{KeyFiles: []string{writeFile(t, "ed.jwk", []byte(k))}})
		wantGrant(t, ed, connURL("/room", refEdToken), Grant{Root: "room", Publish: []string{"stream1", "stream2"}, Subscribe: []string{"feed1"}})
	}
	pub, err := PublicJWK([]byte(refEdPrivate))
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	_ = json.Unmarshal(pub, &got)
	_ = json.Unmarshal([]byte(refEdPublic), &want)
	if !jsonEqual(got, want) {
		t.Errorf("PublicJWK = %s, want %s", pub, refEdPublic)
	}

	// What moqbridge mints with the reference key has the claims layout
	// moq-token reads.
	tok := mint(t, writeFile(t, "hs.jwk", []byte(refHS256Key)), Claims{Root: "demo", Put: []string{"alice"}, Get: []string{"bob"}, Expires: time.Unix(4102444800, 0), IssuedAt: time.Unix(1700000000, 0)})
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if string(payload) != `{"root":"demo","put":["alice"],"get":["bob"],"exp":4102444800,"iat":1700000000}` {
		t.Errorf("payload = %s", payload)
	}
	if h := header(t, tok); h["alg"] != "HS256" || h["kid"] != "d55b1f13e6bda281" || h["typ"] != "JWT" {
		t.Errorf("header = %v", h)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestRawSecretFile(t *testing.T) {
	const secret = "correct horse battery staple, 40 bytes.." // 40 bytes: HS256 only
	withNL := writeFile(t, "secret", []byte(secret+"\r\n"))
	without := writeFile(t, "secret2", []byte(secret))
	tok, err := MintSecret(withNL, Claims{Root: "a", Put: []string{""}})
	if err != nil {
		t.Fatal(err)
	}
	if h := header(t, tok); h["alg"] != "HS256" || h["kid"] != nil {
		t.Fatalf("header = %v", h)
	}
	want := Grant{Root: "a", Publish: []string{""}, Subscribe: []string{}}
	wantGrant(t, newAuth(t, Config{SecretFiles: []string{without}}), connURL("/a", tok), want)
	wantGrant(t, newAuth(t, Config{SecretFiles: []string{withNL}}), connURL("/a", tok), want)

	// A token with a kid falls back to the keys without one.
	wantGrant(t, newAuth(t, Config{SecretFiles: []string{withNL}}), connURL("/a",
		signRaw(t, jwt.SigningMethodHS256, []byte(secret), jwt.MapClaims{"root": "a", "put": ""}, "some-kid")), want)
	// HS384 and HS512 need a secret of 48 and 64 bytes (RFC 7518 §3.2).
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		tok := signRaw(t, m, []byte(secret), jwt.MapClaims{"root": "a", "put": ""}, "")
		wantRefused(t, newAuth(t, Config{SecretFiles: []string{withNL}}), connURL("/a", tok), "wrong algorithm for key")
	}
	long := strings.Repeat("0123456789abcdef", 4) // 64 bytes
	longFile := writeFile(t, "long", []byte(long+"\n"))
	for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
		tok := signRaw(t, m, []byte(long), jwt.MapClaims{"root": "a", "put": ""}, "")
		wantGrant(t, newAuth(t, Config{SecretFiles: []string{longFile}}), connURL("/a", tok), want)
	}
	// A different secret does not verify.
	other := writeFile(t, "other", []byte(secret+"!\n"))
	wantRefused(t, newAuth(t, Config{SecretFiles: []string{other}}), connURL("/a", tok), "bad signature")

	// A secret file is neither a key file nor a key for Mint.
	if _, err := New(Config{KeyFiles: []string{withNL}}); !errors.Is(err, ErrNotAKey) {
		t.Errorf("New with a secret as a key file: %v, want ErrNotAKey", err)
	}
	if _, err := Mint(withNL, Claims{Put: []string{""}}); !errors.Is(err, ErrNotAKey) {
		t.Errorf("Mint with a secret file: %v, want ErrNotAKey", err)
	}
}

func TestPEMKeys(t *testing.T) {
	type pemCase struct {
		name      string
		signer    []byte // private PEM
		verifiers [][]byte
		alg       string
	}
	var cases []pemCase
	for _, c := range []struct {
		curve elliptic.Curve
		alg   string
	}{{elliptic.P256(), "ES256"}, {elliptic.P384(), "ES384"}} {
		pkcs8, sec1, pub, _ := ecPEM(t, c.curve)
		// openssl ecparam -genkey writes an EC PARAMETERS block first.
		withParams := append([]byte("-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"), sec1...)
		cases = append(cases,
			pemCase{c.alg + "/pkcs8", pkcs8, [][]byte{pub, pkcs8, sec1}, c.alg},
			pemCase{c.alg + "/sec1", withParams, [][]byte{pub}, c.alg},
		)
	}
	edPriv, edPub, _ := edPEM(t)
	cases = append(cases, pemCase{"EdDSA/pkcs8", edPriv, [][]byte{edPub, edPriv}, "EdDSA"})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := mint(t, writeFile(t, "key.pem", c.signer), Claims{Root: "x", Get: []string{"y"}})
			if h := header(t, tok); h["alg"] != c.alg || h["kid"] != nil {
				t.Fatalf("header = %v", h)
			}
			for _, v := range c.verifiers {
				a := newAuth(t, Config{KeyFiles: []string{writeFile(t, "v.pem", v)}})
				wantGrant(t, a, connURL("/x", tok), Grant{Root: "x", Publish: []string{}, Subscribe: []string{"y"}})
			}
		})
	}

	// PublicJWK accepts a PEM private key too.
	pj, err := PublicJWK(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	tok := mint(t, writeFile(t, "ed.pem", edPriv), Claims{Put: []string{""}})
	wantGrant(t, newAuth(t, Config{KeyFiles: []string{writeFile(t, "ed.jwk", pj)}}), connURL("/", tok),
		Grant{Root: "", Publish: []string{""}, Subscribe: []string{}})
}

func TestJWKSetKidSelection(t *testing.T) {
	var privs []string
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	kids := map[string]string{}
	for _, alg := range []string{"ES256", "ES256", "EdDSA", "HS256"} {
		priv, err := GenerateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		privs = append(privs, writeFile(t, "k.jwk", priv))
		entry := priv
		if alg != "HS256" {
			if entry, err = PublicJWK(priv); err != nil {
				t.Fatal(err)
			}
		}
		set.Keys = append(set.Keys, entry)
		var j jwk
		_ = json.Unmarshal(priv, &j)
		kids[privs[len(privs)-1]] = j.Kid
	}
	setJSON, _ := json.Marshal(set)
	a := newAuth(t, Config{KeyFiles: []string{writeFile(t, "set.json", setJSON)}})
	for _, p := range privs {
		tok := mint(t, p, Claims{Root: "r", Put: []string{"p"}})
		if header(t, tok)["kid"] != kids[p] {
			t.Fatalf("kid not in header")
		}
		wantGrant(t, a, connURL("/r", tok), Grant{Root: "r", Publish: []string{"p"}, Subscribe: []string{}})
	}

	// An unknown kid is refused, even if the signature would verify with
	// one of the keys: the kid selects, it is not merely a hint.
	data, _ := os.ReadFile(privs[0])
	k, err := parseJWK(data)
	if err != nil {
		t.Fatal(err)
	}
	tok := signRaw(t, jwt.SigningMethodES256, k.ecPriv, jwt.MapClaims{"put": ""}, "no-such-kid")
	wantRefused(t, a, connURL("/", tok), `unknown key id "no-such-kid"`)

	// A kid naming a different key of the right type is refused too.
	tok = signRaw(t, jwt.SigningMethodES256, k.ecPriv, jwt.MapClaims{"put": ""}, kids[privs[1]])
	wantRefused(t, a, connURL("/", tok), "bad signature")

	// Without a kid every key that fits the algorithm is tried.
	tok = signRaw(t, jwt.SigningMethodES256, k.ecPriv, jwt.MapClaims{"put": ""}, "")
	wantGrant(t, a, connURL("/", tok), Grant{Root: "", Publish: []string{""}, Subscribe: []string{}})

	// A non-string kid is malformed.
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"put": ""})
	tk.Header["kid"] = 7
	tok, _ = tk.SignedString(k.ecPriv)
	wantRefused(t, a, connURL("/", tok), "malformed token")

	// Several key files combine.
	hsPriv, _ := genKey(t, "HS512")
	edPriv, edPub := genKey(t, "EdDSA")
	multi := newAuth(t, Config{KeyFiles: []string{hsPriv, edPub}})
	for _, p := range []string{hsPriv, edPriv} {
		wantGrant(t, multi, connURL("/", mint(t, p, Claims{Get: []string{"g"}})), Grant{Root: "", Publish: []string{}, Subscribe: []string{"g"}})
	}
}

func TestExpiry(t *testing.T) {
	for _, alg := range []string{"HS256", "ES256", "EdDSA"} {
		priv, pub := genKey(t, alg)
		a := newAuth(t, Config{KeyFiles: []string{pub}})
		expired := mint(t, priv, Claims{Put: []string{""}, Expires: time.Now().Add(-time.Minute), IssuedAt: time.Now().Add(-time.Hour)})
		wantRefused(t, a, connURL("/", expired), "token expired")
		fresh := mint(t, priv, Claims{Put: []string{""}, Expires: time.Now().Add(time.Minute)})
		wantGrant(t, a, connURL("/", fresh), Grant{Publish: []string{""}, Subscribe: []string{}})
		// No exp: valid forever, as with moq-token.
		forever := mint(t, priv, Claims{Put: []string{""}})
		wantGrant(t, a, connURL("/", forever), Grant{Publish: []string{""}, Subscribe: []string{}})
	}
	// nbf in the future is refused; exp: null counts as absent.
	const s3cret = "a secret of at least thirty-two bytes"
	secret := writeFile(t, "s", []byte(s3cret))
	a := newAuth(t, Config{SecretFiles: []string{secret}})
	tok := signRaw(t, jwt.SigningMethodHS256, []byte(s3cret), jwt.MapClaims{"put": "", "nbf": time.Now().Add(time.Hour).Unix()}, "")
	wantRefused(t, a, connURL("/", tok), "not valid yet")
	tok = signRaw(t, jwt.SigningMethodHS256, []byte(s3cret), jwt.MapClaims{"put": "", "exp": nil}, "")
	wantGrant(t, a, connURL("/", tok), Grant{Publish: []string{""}, Subscribe: []string{}})
	tok = signRaw(t, jwt.SigningMethodHS256, []byte(s3cret), jwt.MapClaims{"put": "", "exp": "tomorrow"}, "")
	wantRefused(t, a, connURL("/", tok), "malformed token")
}

func TestOtherKeyRefused(t *testing.T) {
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			priv, _ := genKey(t, alg)
			_, otherPub := genKey(t, alg)
			// Different kids, so strip the kid to reach the signature check.
			data, _ := os.ReadFile(otherPub)
			var j map[string]any
			_ = json.Unmarshal(data, &j)
			delete(j, "kid")
			data, _ = json.Marshal(j)
			a := newAuth(t, Config{KeyFiles: []string{writeFile(t, "other.jwk", data)}})
			tok := mint(t, priv, Claims{Put: []string{""}})
			wantRefused(t, a, connURL("/", tok), "bad signature")

			// With the kid left in, the unknown kid is the reason.
			_, otherPub2 := genKey(t, alg)
			wantRefused(t, newAuth(t, Config{KeyFiles: []string{otherPub2}}), connURL("/", tok), "unknown key id")

			// A tampered payload fails too.
			_, pub := genKeyPairFrom(t, priv)
			parts := strings.Split(tok, ".")
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(`{"put":[""],"get":[""]}`))
			wantRefused(t, newAuth(t, Config{KeyFiles: []string{pub}}), connURL("/", strings.Join(parts, ".")), "bad signature")
		})
	}
}

// genKeyPairFrom returns priv and a verification key file for it.
func genKeyPairFrom(t *testing.T, priv string) (string, string) {
	data, _ := os.ReadFile(priv)
	var j jwk
	_ = json.Unmarshal(data, &j)
	if j.Kty == "oct" {
		return priv, priv
	}
	pub, err := PublicJWK(data)
	if err != nil {
		t.Fatal(err)
	}
	return priv, writeFile(t, "pub.jwk", pub)
}

func TestAlgorithmConfusion(t *testing.T) {
	pkcs8, _, pubPEM, ecKey := ecPEM(t, elliptic.P256())
	pubFile := writeFile(t, "ec.pub.pem", pubPEM)
	a := newAuth(t, Config{KeyFiles: []string{pubFile}})
	claims := jwt.MapClaims{"put": "", "get": ""}

	// HMAC with the public key's file bytes (and variants) as the secret.
	pubJWK, err := PublicJWK(pkcs8)
	if err != nil {
		t.Fatal(err)
	}
	point, _ := ecKey.PublicKey.Bytes()
	for _, secret := range [][]byte{pubPEM, []byte(strings.TrimSpace(string(pubPEM))), pubJWK, point} {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			tok := signRaw(t, m, secret, claims, "")
			wantRefused(t, a, connURL("/", tok), "wrong algorithm for key")
		}
	}
	// The same against the public JWK.
	aj := newAuth(t, Config{KeyFiles: []string{writeFile(t, "ec.pub.jwk", pubJWK)}})
	wantRefused(t, aj, connURL("/", signRaw(t, jwt.SigningMethodHS256, pubJWK, claims, "")), "wrong algorithm for key")

	// ES384 against a P-256 key, EdDSA against an EC key.
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	wantRefused(t, a, connURL("/", signRaw(t, jwt.SigningMethodES384, k384, claims, "")), "wrong algorithm for key")
	_, _, edKey := edPEM(t)
	wantRefused(t, a, connURL("/", signRaw(t, jwt.SigningMethodEdDSA, edKey, claims, "")), "wrong algorithm for key")

	// An ES256 token against an HMAC-only authorizer.
	hs := newAuth(t, Config{SecretFiles: []string{writeFile(t, "s", []byte("a secret of at least thirty-two bytes"))}})
	wantRefused(t, hs, connURL("/", signRaw(t, jwt.SigningMethodES256, ecKey, claims, "")), "wrong algorithm for key")

	// An oct JWK with alg HS256 does not take HS512.
	oct := `{"kty":"oct","alg":"HS256","k":"` + base64.RawURLEncoding.EncodeToString([]byte("octsecret-octsecret-octsecret-32")) + `"}`
	ao := newAuth(t, Config{KeyFiles: []string{writeFile(t, "oct.jwk", []byte(oct))}})
	wantRefused(t, ao, connURL("/", signRaw(t, jwt.SigningMethodHS512, []byte("octsecret-octsecret-octsecret-32"), claims, "")), "wrong algorithm for key")
	wantGrant(t, ao, connURL("/", signRaw(t, jwt.SigningMethodHS256, []byte("octsecret-octsecret-octsecret-32"), claims, "")), Grant{Publish: []string{""}, Subscribe: []string{""}})

	// alg "none" and unknown algorithms.
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	wantRefused(t, hs, connURL("/", none), "wrong algorithm for key")
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"XX999","typ":"JWT"}`))
	p := base64.RawURLEncoding.EncodeToString([]byte(`{"put":""}`))
	wantRefused(t, hs, connURL("/", h+"."+p+".c2ln"), `unsupported algorithm "XX999"`)
}

func TestScope(t *testing.T) {
	secret := []byte("scope-secret-scope-secret-scope-secret")
	a := newAuth(t, Config{SecretFiles: []string{writeFile(t, "s", secret)}})
	type claims = jwt.MapClaims
	cases := []struct {
		name   string
		claims claims
		path   string
		want   *Grant // nil: refused
		reason string
	}{
		{"same root", claims{"root": "demo", "put": "", "get": ""}, "/demo",
			&Grant{"demo", []string{""}, []string{""}}, ""},
		{"same root, slashes", claims{"root": "/demo/", "put": []string{"a//b/"}, "get": ""}, "//demo//",
			&Grant{"demo", []string{"a/b"}, []string{""}}, ""},
		{"narrow: prefix equals suffix", claims{"root": "demo", "put": "alice", "get": ""}, "/demo/alice",
			&Grant{"demo/alice", []string{""}, []string{""}}, ""},
		{"narrow: prefix drops out", claims{"root": "demo", "put": "alice", "get": ""}, "/demo/bob",
			&Grant{"demo/bob", []string{}, []string{""}}, ""},
		{"narrow: prefix under suffix", claims{"root": "demo", "put": []string{"alice/cam", "alice/mic", "bob"}, "get": "alice"}, "/demo/alice",
			&Grant{"demo/alice", []string{"cam", "mic"}, []string{""}}, ""},
		{"narrow: prefix contains deeper suffix", claims{"root": "demo", "get": "alice"}, "/demo/alice/cam/hd",
			&Grant{"demo/alice/cam/hd", []string{}, []string{""}}, ""},
		{"narrow: nothing left", claims{"root": "demo", "put": "alice"}, "/demo/bob",
			nil, `no permission under path "demo/bob"`},
		{"narrow: segment boundary", claims{"root": "", "put": "foo"}, "/foobar",
			nil, "no permission"},
		{"widen to top", claims{"root": "demo/room", "put": "alice", "get": ""}, "/",
			&Grant{"", []string{"demo/room/alice"}, []string{"demo/room"}}, ""},
		{"widen one level", claims{"root": "demo/room", "put": "alice", "get": ""}, "/demo",
			&Grant{"demo", []string{"room/alice"}, []string{"room"}}, ""},
		{"widen with empty URL path", claims{"root": "demo", "put": []string{"a", "b"}}, "",
			&Grant{"", []string{"demo/a", "demo/b"}, []string{}}, ""},
		{"unrelated", claims{"root": "demo", "put": ""}, "/other",
			nil, `path "other" is unrelated to the token root "demo"`},
		{"unrelated sibling name", claims{"root": "demo", "put": ""}, "/demoX",
			nil, "unrelated"},
		{"unrelated deeper", claims{"root": "demo/a", "put": ""}, "/demo/b/c",
			nil, "unrelated"},
		{"no root claim", claims{"put": "a", "get": "b"}, "",
			&Grant{"", []string{"a"}, []string{"b"}}, ""},
		{"no root claim, narrowed", claims{"put": "a", "get": "b"}, "/a/x",
			&Grant{"a/x", []string{""}, []string{}}, ""},
		{"prefixes reduced", claims{"put": []string{"a/b", "a", "a", "c/d", "ab"}, "get": []string{"z", ""}}, "/",
			&Grant{"", []string{"a", "ab", "c/d"}, []string{""}}, ""},
		{"put as string, get as array", claims{"root": "r", "put": "x", "get": []string{"y", "z"}}, "/r",
			&Grant{"r", []string{"x"}, []string{"y", "z"}}, ""},
		{"put as array, get as string", claims{"root": "r", "put": []string{"x"}, "get": "y"}, "/r",
			&Grant{"r", []string{"x"}, []string{"y"}}, ""},
		{"empty string means all", claims{"root": "r", "get": ""}, "/r/deep/path",
			&Grant{"r/deep/path", []string{}, []string{""}}, ""},
		{"empty arrays", claims{"root": "r", "put": []string{}, "get": []string{}}, "/r",
			nil, "no permission"},
		{"nulls", claims{"root": "r", "put": nil, "get": nil}, "/r",
			nil, "no permission"},
		{"pub/sub are not honoured", claims{"root": "demo", "pub": "", "sub": ""}, "/demo",
			nil, "no permission"},
		{"pub/sub arrays are not honoured", claims{"root": "demo", "pub": []string{""}, "sub": []string{""}}, "/demo",
			nil, "no permission"},
		{"put/get honoured beside pub/sub", claims{"root": "demo", "pub": "", "sub": []string{"x"}, "get": "g"}, "/demo",
			&Grant{"demo", []string{}, []string{"g"}}, ""},
		{"cluster parsed", claims{"cluster": true, "put": ""}, "/",
			&Grant{"", []string{""}, []string{}}, ""},
		{"cluster alone grants nothing", claims{"cluster": true}, "/",
			nil, "no permission"},
		{"cluster must be bool", claims{"cluster": "yes", "put": ""}, "/",
			nil, "malformed token"},
		{"null in array is malformed", claims{"put": []any{nil}}, "/",
			nil, "malformed token"},
		{"put must be strings", claims{"put": 5}, "/",
			nil, "malformed token"},
		{"put array must hold strings", claims{"put": []any{"a", 1}}, "/",
			nil, "malformed token"},
		{"root must be a string", claims{"root": []string{"a"}, "put": ""}, "/a",
			nil, "malformed token"},
		{"other claims ignored", claims{"put": "", "aud": 5, "iss": []int{1}, "foo": map[string]any{}}, "/",
			&Grant{"", []string{""}, []string{}}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := signRaw(t, jwt.SigningMethodHS256, secret, c.claims, "")
			u := connURL(c.path, tok)
			if c.want == nil {
				wantRefused(t, a, u, c.reason)
				return
			}
			wantGrant(t, a, u, *c.want)
		})
	}
}

func TestMintedPutGetScope(t *testing.T) {
	priv, pub := genKey(t, "ES256")
	a := newAuth(t, Config{KeyFiles: []string{pub}})
	tok := mint(t, priv, Claims{Root: "live", Put: []string{"studio"}, Get: []string{"studio", "lobby"}})
	wantGrant(t, a, connURL("/live/studio", tok), Grant{"live/studio", []string{""}, []string{""}})
	wantGrant(t, a, connURL("/live/lobby", tok), Grant{"live/lobby", []string{}, []string{""}})
	wantGrant(t, a, connURL("/", tok), Grant{"", []string{"live/studio"}, []string{"live/lobby", "live/studio"}})
	wantRefused(t, a, connURL("/live/backstage", tok), "no permission")
	wantRefused(t, a, connURL("/dead", tok), "unrelated")
}

func TestPublicPrefix(t *testing.T) {
	anon := "/anon/"
	a := newAuth(t, Config{PublicPrefix: &anon})
	wantGrant(t, a, connURL("/anon", ""), Grant{"anon", []string{""}, []string{""}})
	wantGrant(t, a, connURL("/anon/room", ""), Grant{"anon/room", []string{""}, []string{""}})
	wantGrant(t, a, connURL("/", ""), Grant{"", []string{"anon"}, []string{"anon"}})
	wantRefused(t, a, connURL("/private", ""), `no token, and path "private" is outside the public prefix "anon"`)
	wantRefused(t, a, connURL("/anonymous", ""), "outside the public prefix")
	// An empty jwt parameter is no token.
	wantGrant(t, a, &url.URL{Path: "/anon/x", RawQuery: "jwt="}, Grant{"anon/x", []string{""}, []string{""}})
	// A token with no keys configured is refused, not ignored.
	wantRefused(t, a, connURL("/anon", "a.b.c"), "no verification key")

	everything := ""
	all := newAuth(t, Config{PublicPrefix: &everything})
	wantGrant(t, all, connURL("/", ""), Grant{"", []string{""}, []string{""}})
	wantGrant(t, all, connURL("/any/where", ""), Grant{"any/where", []string{""}, []string{""}})

	// With keys as well: a valid token gets its own grant, an invalid one
	// is refused rather than treated as anonymous.
	priv, pub := genKey(t, "EdDSA")
	both := newAuth(t, Config{KeyFiles: []string{pub}, PublicPrefix: &anon})
	tok := mint(t, priv, Claims{Root: "vip", Get: []string{""}})
	wantGrant(t, both, connURL("/vip", tok), Grant{"vip", []string{}, []string{""}})
	wantRefused(t, both, connURL("/anon", tok), "unrelated")
	wantRefused(t, both, connURL("/anon", tok+"x"), "bad signature")
	wantGrant(t, both, connURL("/anon", ""), Grant{"anon", []string{""}, []string{""}})
}

func TestMissingToken(t *testing.T) {
	_, pub := genKey(t, "HS256")
	a := newAuth(t, Config{KeyFiles: []string{pub}})
	wantRefused(t, a, connURL("/", ""), "missing token")
	wantRefused(t, a, &url.URL{Path: "/x", RawQuery: "jwt=&other=1"}, "missing token")
	wantRefused(t, a, &url.URL{Path: "/x", RawQuery: "token=abc"}, "missing token")
	if _, err := a.Authorize(nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Authorize(nil) = %v", err)
	}
}

func TestQueryParameter(t *testing.T) {
	priv, pub := genKey(t, "HS256")
	a := newAuth(t, Config{KeyFiles: []string{pub}})
	tok := mint(t, priv, Claims{Put: []string{""}})
	other := mint(t, priv, Claims{Get: []string{""}})
	want := Grant{Publish: []string{""}, Subscribe: []string{}}
	wantGrant(t, a, &url.URL{Path: "/", RawQuery: "register=x&jwt=" + tok + "&z=1"}, want)
	wantGrant(t, a, &url.URL{Path: "/", RawQuery: "jwt=&jwt=" + tok}, want)
	wantGrant(t, a, &url.URL{Path: "/", RawQuery: "jwt=" + tok + "&jwt=" + tok}, want)
	wantRefused(t, a, &url.URL{Path: "/", RawQuery: "jwt=" + tok + "&jwt=" + other}, "more than one jwt")
	wantRefused(t, a, connURL("/", strings.Repeat("a", maxTokenLength+1)), "over the")
	wantRefused(t, a, connURL("/", "not-a-token"), "malformed token")
	wantRefused(t, a, connURL("/", "a.b"), "malformed token")
}

func TestMintErrors(t *testing.T) {
	priv, pub := genKey(t, "ES256")
	if _, err := Mint(priv, Claims{Root: "x"}); err == nil || !strings.Contains(err.Error(), "allow nothing") {
		t.Errorf("Mint without put/get: %v", err)
	}
	if _, err := Mint(pub, Claims{Put: []string{""}}); err == nil || !strings.Contains(err.Error(), pub) {
		t.Errorf("Mint with a public key: %v", err)
	}
	missing := priv + ".missing"
	if _, err := Mint(missing, Claims{Put: []string{""}}); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Mint with a missing file: %v", err)
	}
	_, _, pubPEM, _ := ecPEM(t, elliptic.P256())
	if _, err := Mint(writeFile(t, "pub.pem", pubPEM), Claims{Put: []string{""}}); err == nil {
		t.Error("Mint with a PEM public key succeeded")
	}
	verifyOnly := `{"kty":"oct","k":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + `","key_ops":["verify"]}`
	if _, err := Mint(writeFile(t, "v.jwk", []byte(verifyOnly)), Claims{Put: []string{""}}); err == nil {
		t.Error("Mint with a verify-only key succeeded")
	}
}

func TestConcurrentAuthorize(t *testing.T) {
	priv, pub := genKey(t, "ES256")
	hs, _ := genKey(t, "HS256")
	anon := "pub"
	a := newAuth(t, Config{KeyFiles: []string{pub, hs}, PublicPrefix: &anon})
	toks := []string{
		mint(t, priv, Claims{Root: "r", Put: []string{""}}),
		mint(t, hs, Claims{Root: "r", Get: []string{""}}),
		"",
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				tok := toks[(i+j)%len(toks)]
				path := "/r/x"
				if tok == "" {
					path = "/pub/x"
				}
				if _, err := a.Authorize(connURL(path, tok)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
