package wire

import "testing"

func TestVersionNames(t *testing.T) {
	for v, want := range map[Version]string{
		Lite01: "moq-lite-01", Lite02: "moq-lite-02", Lite03: "moq-lite-03", Lite04: "moq-lite-04",
		0xff00000e: "0xff00000e",
	} {
		if got := v.String(); got != want {
			t.Errorf("%#x.String() = %q, want %q", uint64(v), got, want)
		}
	}
	for v, want := range map[Version]string{Lite01: "", Lite02: "", Lite03: "moq-lite-03", Lite04: "moq-lite-04", 7: ""} {
		if got := v.ALPN(); got != want {
			t.Errorf("%v.ALPN() = %q, want %q", v, got, want)
		}
		if want != "" {
			if got, ok := VersionFromALPN(want); !ok || got != v {
				t.Errorf("VersionFromALPN(%q) = %v, %v", want, got, ok)
			}
		}
	}
	for _, s := range []string{ALPNLegacy, "", "h3", "moq-lite-02", "moqt-17"} {
		if v, ok := VersionFromALPN(s); ok {
			t.Errorf("VersionFromALPN(%q) = %v", s, v)
		}
	}
}

func TestErrorCodeNames(t *testing.T) {
	for c, want := range map[ErrorCode]string{
		CodeCancel: "Cancel", CodeDecode: "Decode", CodeVersion: "Version", CodeNotFound: "NotFound",
		CodeCacheFull: "CacheFull", CodeUnknownAlpn: "UnknownAlpn", 7: "ErrorCode(7)",
		64: "Application(0)", 67: "Application(3)", 64 + 0x10000: "ErrorCode(65600)",
	} {
		if got := c.String(); got != want {
			t.Errorf("ErrorCode(%d).String() = %q, want %q", uint64(c), got, want)
		}
	}
	codes := map[ErrorCode]uint64{
		CodeCancel: 0, CodeRequiredExtension: 1, CodeOld: 2, CodeTimeout: 3, CodeTransport: 4,
		CodeDecode: 5, CodeUnauthorized: 6, CodeVersion: 9, CodeUnexpectedStream: 10,
		CodeBoundsExceeded: 11, CodeDuplicate: 12, CodeNotFound: 13, CodeWrongSize: 14,
		CodeProtocolViolation: 15, CodeUnexpectedMessage: 16, CodeUnsupported: 17, CodeEncode: 18,
		CodeTooManyParameters: 19, CodeInvalidRole: 20, CodeUnknownAlpn: 21, CodeDropped: 24,
		CodeClosed: 25, CodeCacheFull: 26,
	}
	if len(codes) != 23 {
		t.Fatalf("%d distinct codes", len(codes))
	}
	for c, v := range codes {
		if uint64(c) != v {
			t.Errorf("%v = %d, want %d", c, uint64(c), v)
		}
	}
}

func TestStreamTypeNames(t *testing.T) {
	if StreamSubscribe.String() != "subscribe" || StreamClientCompat.String() != "client-compat" || StreamType(0x40).String() != "0x40" {
		t.Error("unexpected stream type names")
	}
}
