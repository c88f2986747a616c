package rtmpurl

import (
	"strings"
	"testing"
)

// FuzzParse: any input is accepted or refused without a panic; an
// accepted URL is rtmp or rtmps with a host and a stream key, and its
// redacted form does not show the key.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl",
		"rtmps://live.twitch.tv/app/live_123_abc?bandwidthtest=true",
		"rtmp://user:pass@127.0.0.1:1935/live/x",
		"rtmp://h/app#key",
		"rtmp://[::1]:1935/a/b/c",
		"http://h/app/key", "rtmp://h", "rtmp:///x/y", "rtmp://h:99999/a/b", "%", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := Parse(raw)
		if err != nil {
			return
		}
		if (u.Scheme != "rtmp" && u.Scheme != "rtmps") || u.Hostname() == "" || u.Fragment == "" {
			t.Fatalf("%q accepted as %#v", raw, u)
		}
		key := u.Fragment
		if len(key) < 8 || strings.Contains(u.Host+u.Path, key) {
			return // too short to tell from the rest
		}
		for _, red := range []string{RedactURL(u), Redact(raw)} {
			if strings.Contains(red, key) {
				t.Fatalf("%q: the redacted %q shows the key %q", raw, red, key)
			}
		}
	})
}
