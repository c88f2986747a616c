// Package wire owns the byte-level encoding of every MOQ Lite message of
// versions moq-lite-01 through moq-lite-04 as moqbridge speaks them: QUIC
// varints, strings, length-prefixed messages, stream types, the legacy
// SETUP handshake, and the announce, subscribe, fetch, probe, goaway and
// group stream messages.
//
// The package is deliberately free of policy: it performs no I/O beyond the
// buffered Reader that frames bytes from one stream, keeps no session state,
// and never decides what a session should do with a message. Encoders append
// to a caller-supplied slice and decoders work on one message body held in
// memory; the session layer decides which message to expect where.
//
// The encoding is hand-written because no Go library speaks MOQ Lite. It
// follows the byte layout of the MOQ Lite reference implementations, which
// the golden tests pin down byte for byte.
//
// # Conventions
//
//   - Integers are QUIC variable-length integers (RFC 9000 §16), encoded
//     minimally; non-minimal encodings are accepted on decode.
//   - Priority, the ordered flag and the announce status are single raw bytes.
//   - A boolean is one byte and only 0x00 and 0x01 are accepted on decode.
//   - A string is a varint byte length followed by UTF-8 bytes; invalid UTF-8
//     is rejected on decode.
//   - A message is a varint body length followed by the body; a body with
//     bytes left over after its last field is an error (ErrTrailing).
//   - Broadcast paths, prefixes and suffixes are normalised with CleanPath on
//     decode. Encoders write strings verbatim, so callers pass clean paths.
//
// Every Append function appends to its first argument and returns the
// extended slice; it allocates only when that slice must grow. Append
// functions taking a Version panic when the message does not exist in that
// version (for example SUBSCRIBE_DROP in moq-lite-02), because that can only
// be a programming error; the matching Decode function returns an error
// wrapping ErrInvalid instead.
package wire
