package rtmpurl

import (
	"bytes"
	"testing"
)

// TestParse: the URLs services give (the stream key as the last path
// segment, a query belonging to it) become gortmplib's form (the key in
// the fragment); gortmplib's own form is kept; logs never show the key or
// a password.
func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, path, key, redacted string
	}{
		{"rtmp://a.rtmp.youtube.com/live2/abcd-efgh", "/live2", "abcd-efgh", "rtmp://a.rtmp.youtube.com/live2/<key>"},
		{"rtmp://live.twitch.tv/app/live_1_x?bandwidthtest=true", "/app", "live_1_x?bandwidthtest=true", "rtmp://live.twitch.tv/app/<key>"},
		{"rtmps://h:443/a/b/k/", "/a/b", "k", "rtmps://h:443/a/b/<key>"},
		{"rtmp://h/app#k", "/app", "k", "rtmp://h/app/<key>"},
		{"rtmp://user:pw@h/app/k", "/app", "k", "rtmp://user@h/app/<key>"},
	} {
		u, err := Parse(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if u.Path != tc.path || u.Fragment != tc.key || u.RawQuery != "" {
			t.Errorf("%s: path %q key %q query %q, want %q %q", tc.in, u.Path, u.Fragment, u.RawQuery, tc.path, tc.key)
		}
		if got := Redact(tc.in); got != tc.redacted {
			t.Errorf("Redact(%s) = %s, want %s", tc.in, got, tc.redacted)
		}
	}
	for _, bad := range []string{"http://h/app/k", "rtmp://h/app", "rtmp:///app/k", "rtmp://h:0/app/k", "rtmp://h:x/app/k", "::"} {
		_, err := Parse(bad)
		if err == nil {
			t.Errorf("%s: no error", bad)
			continue
		}
		if bytes.Contains([]byte(err.Error()), []byte("/k")) {
			t.Errorf("%s: the error shows the key: %v", bad, err)
		}
	}
}
