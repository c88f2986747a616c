package wire

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors returned, usually wrapped with the message and field name,
// by the decoders and the Reader. Test for them with errors.Is.
var (
	// ErrShort reports that a message body ended before a field was complete.
	ErrShort = errors.New("truncated field")
	// ErrTrailing reports bytes left over in a message body after its last field.
	ErrTrailing = errors.New("trailing bytes in message")
	// ErrTooLarge reports a length that exceeds the caller's limit.
	ErrTooLarge = errors.New("length exceeds limit")
	// ErrInvalid reports a value the protocol does not allow: a bool other
	// than 0 or 1, an unknown status, invalid UTF-8, too many entries, or a
	// message that does not exist in the requested version.
	ErrInvalid = errors.New("invalid value")
)

// fieldError wraps err with the message and field it occurred in, for
// example "subscribe: track: truncated field".
func fieldError(msg, field string, err error) error {
	return fmt.Errorf("%s: %s: %w", msg, field, err)
}

// ErrorCode is a MOQ Lite stream-reset or session-close code.
type ErrorCode uint64

// Reset and close codes. Codes 7, 8, 22 and 23 are unused; 64+n carries
// application code n.
const (
	CodeCancel            ErrorCode = 0  // normal cancellation; also the default
	CodeRequiredExtension ErrorCode = 1  // a required extension is missing
	CodeOld               ErrorCode = 2  // the group is too old
	CodeTimeout           ErrorCode = 3  // an operation timed out
	CodeTransport         ErrorCode = 4  // the transport failed
	CodeDecode            ErrorCode = 5  // malformed or unexpected bytes
	CodeUnauthorized      ErrorCode = 6  // not allowed
	CodeVersion           ErrorCode = 9  // no common version
	CodeUnexpectedStream  ErrorCode = 10 // a stream of an unexpected type
	CodeBoundsExceeded    ErrorCode = 11 // a limit was exceeded
	CodeDuplicate         ErrorCode = 12 // a duplicate announce, group or id
	CodeNotFound          ErrorCode = 13 // the broadcast or track does not exist
	CodeWrongSize         ErrorCode = 14 // a frame is shorter than its size
	CodeProtocolViolation ErrorCode = 15 // the peer broke the protocol
	CodeUnexpectedMessage ErrorCode = 16 // a message arrived where it is not allowed
	CodeUnsupported       ErrorCode = 17 // the feature is not supported
	CodeEncode            ErrorCode = 18 // a message could not be encoded
	CodeTooManyParameters ErrorCode = 19 // too many setup parameters
	CodeInvalidRole       ErrorCode = 20 // the peer's role does not allow this
	CodeUnknownAlpn       ErrorCode = 21 // the negotiated protocol is unknown
	CodeDropped           ErrorCode = 24 // the data was dropped
	CodeClosed            ErrorCode = 25 // the session or stream was closed
	CodeCacheFull         ErrorCode = 26 // the cache is full
)

// codeApplication is the first code that carries an application code.
const codeApplication ErrorCode = 64

var errorCodeNames = map[ErrorCode]string{
	CodeCancel:            "Cancel",
	CodeRequiredExtension: "RequiredExtension",
	CodeOld:               "Old",
	CodeTimeout:           "Timeout",
	CodeTransport:         "Transport",
	CodeDecode:            "Decode",
	CodeUnauthorized:      "Unauthorized",
	CodeVersion:           "Version",
	CodeUnexpectedStream:  "UnexpectedStream",
	CodeBoundsExceeded:    "BoundsExceeded",
	CodeDuplicate:         "Duplicate",
	CodeNotFound:          "NotFound",
	CodeWrongSize:         "WrongSize",
	CodeProtocolViolation: "ProtocolViolation",
	CodeUnexpectedMessage: "UnexpectedMessage",
	CodeUnsupported:       "Unsupported",
	CodeEncode:            "Encode",
	CodeTooManyParameters: "TooManyParameters",
	CodeInvalidRole:       "InvalidRole",
	CodeUnknownAlpn:       "UnknownAlpn",
	CodeDropped:           "Dropped",
	CodeClosed:            "Closed",
	CodeCacheFull:         "CacheFull",
}

// String returns the code's name, such as "NotFound", "Application(3)" for
// code 67, or "ErrorCode(7)" for an unassigned code.
func (c ErrorCode) String() string {
	if name, ok := errorCodeNames[c]; ok {
		return name
	}
	if c >= codeApplication && c-codeApplication <= 0xffff {
		return "Application(" + strconv.FormatUint(uint64(c-codeApplication), 10) + ")"
	}
	return "ErrorCode(" + strconv.FormatUint(uint64(c), 10) + ")"
}
