// Package auth implements moqbridge's JWT authentication, compatible with
// the tokens and key files of moq-relay and moq-token.
//
// # Tokens
//
// A client presents its token as the "jwt" query parameter of the URL it
// connects to (WebTransport CONNECT or WebSocket upgrade). The token is a
// JWS signed with HS256, HS384, HS512, ES256, ES384 or EdDSA, whose claims
// are:
//
//	root     string                the path prefix the token is scoped to
//	put      string or [string]    prefixes, relative to root, it may publish to
//	get      string or [string]    prefixes, relative to root, it may subscribe from
//	cluster  bool                  parsed, otherwise ignored
//	exp, nbf number                checked when present (no leeway)
//	iat      number                parsed, not checked
//
// A prefix "" allows everything under root; a missing claim or an empty
// array allows nothing. The "pub" and "sub" names found in some
// documentation are not claims: only put and get grant anything.
//
// # Paths
//
// Paths are cleaned as MOQ Lite does (leading and trailing '/' removed,
// runs of '/' collapsed) and prefixes match on '/' boundaries: "foo"
// matches "foo" and "foo/bar" but not "foobar".
//
// The URL path is the root the connection asks for; wire paths are relative
// to it. It must be related to the token's root:
//
//   - under it (root "demo", URL "/demo/room"): the permissions narrow to
//     the sub-tree. A prefix that contains "room" becomes "", one under it
//     ("room/alice") loses it ("alice"), any other is dropped.
//   - above it (root "demo/room", URL "/"): each prefix is lengthened by
//     the difference ("alice" becomes "demo/room/alice").
//   - otherwise the connection is refused, and so is one left with no
//     publish or subscribe prefix at all.
//
// Without a token, a configured public prefix P acts like a token with
// root "" and put = get = [P]: a connection under P may do anything there,
// a connection above P may reach P, any other is refused. A token that
// fails verification is refused even when a public prefix is configured.
//
// # Keys
//
// Key files (Config.KeyFiles) are recognised by their content:
//
//   - PEM (PUBLIC KEY, PRIVATE KEY, EC PRIVATE KEY) holding EC
//     P-256/P-384 or Ed25519 keys. CERTIFICATE blocks are skipped, and a
//     file of only certificates is refused: a certificate passed as a key
//     is far more often a mistake (the TLS certificate) than the intent;
//     to verify with a certificate's key, extract its public key;
//   - a JWK, or a JWK set {"keys":[…]}, as JSON or base64url-encoded JSON,
//     with kty "oct" (secret "k"), "EC" (crv P-256 or P-384) or "OKP" (crv
//     Ed25519); "alg", "kid", "use" and "key_ops" are honoured.
//
// Anything else is refused with a *KeyFileError that says what the file
// looks like: empty, a certificate, JSON that is not a JWK, DER, text or
// binary data (ErrNotAKey). A raw HMAC secret is never guessed from a key
// file, since any mistyped path would then become a secret: it is given
// explicitly as a secret file (Config.SecretFiles, MintSecret), whose
// bytes less trailing newlines are the secret, used as they are. A secret
// file that holds or looks like a key (PEM, JSON, a base64url JWK, DER) is
// refused (ErrNotASecret): a public key's text would be a secret anyone
// can sign with.
//
// HMAC keys, raw or JWK, are at least MinSecretSize (32) bytes, and verify
// only the algorithms their length allows (RFC 7518 §3.2): HS256 from 32
// bytes, HS384 from 48, HS512 from 64; a JWK's "alg" narrows this to one.
//
// A token is checked against the keys whose kid equals the token's "kid"
// header (or, when no key has that kid, the keys without one), or against
// every key when the header has no kid; and only against keys that fit its
// algorithm: HMAC algorithms against secrets, ES256 against P-256, ES384
// against P-384, EdDSA against Ed25519. An HS256 token can therefore never
// be checked with a public key's bytes as its secret.
package auth
