package wire

import "fmt"

// MaxHops is the most hops an ANNOUNCE may carry (Lite03 and Lite04).
const MaxHops = 256

// AnnounceInterest (also known as ANNOUNCE_PLEASE) is the first message on
// an announce stream: the subscriber asks for the broadcasts under Prefix
// ("" for all). ExcludeHop, Lite04 only, asks the publisher to skip
// broadcasts whose hop list contains it; 0 means none.
type AnnounceInterest struct {
	Prefix     string
	ExcludeHop uint64
}

// AnnounceInit lists the suffixes of all matching broadcasts that are active
// when the announce stream starts. It exists in Lite01 and Lite02 only,
// where the publisher must send it, possibly empty, before any Announce.
type AnnounceInit struct {
	Suffixes []string
}

// Announce reports that the broadcast at moq.JoinPath(prefix, Suffix) became
// active or ended. HopCount and HopIDs describe the relays the announcement
// passed through: Lite01 and Lite02 carry neither, Lite03 carries only the
// count, and Lite04 carries the count followed by the IDs.
type Announce struct {
	Active   bool
	Suffix   string
	HopCount uint64
	HopIDs   []uint64
}

// AppendAnnounceInterest appends a length-prefixed ANNOUNCE_INTEREST message
// (without the stream type). ExcludeHop is written in Lite04 only.
func AppendAnnounceInterest(b []byte, v Version, m AnnounceInterest) []byte {
	mustSupport("announce interest", v, true)
	b, start := beginMessage(b)
	b = AppendString(b, m.Prefix)
	if v == Lite04 {
		b = AppendVarint(b, m.ExcludeHop)
	}
	return endMessage(b, start)
}

// DecodeAnnounceInterest decodes an ANNOUNCE_INTEREST body. The prefix is
// normalised with CleanPath; ExcludeHop is 0 before Lite04.
func DecodeAnnounceInterest(v Version, body []byte) (AnnounceInterest, error) {
	const name = "announce interest"
	if err := checkVersion(name, v, true); err != nil {
		return AnnounceInterest{}, err
	}
	p := newParser(name, body)
	var m AnnounceInterest
	m.Prefix = p.path("prefix")
	if v == Lite04 {
		m.ExcludeHop = p.varint("exclude hop")
	}
	if err := p.finish(); err != nil {
		return AnnounceInterest{}, err
	}
	return m, nil
}

// AppendAnnounceInit appends a length-prefixed ANNOUNCE_INIT message. It
// panics unless v is Lite01 or Lite02.
func AppendAnnounceInit(b []byte, v Version, m AnnounceInit) []byte {
	mustSupport("announce init", v, v.legacy())
	b, start := beginMessage(b)
	b = AppendVarint(b, uint64(len(m.Suffixes)))
	for _, s := range m.Suffixes {
		b = AppendString(b, s)
	}
	return endMessage(b, start)
}

// DecodeAnnounceInit decodes an ANNOUNCE_INIT body (Lite01 and Lite02 only).
// Each suffix is normalised with CleanPath; an empty list decodes as nil.
func DecodeAnnounceInit(v Version, body []byte) (AnnounceInit, error) {
	const name = "announce init"
	if err := checkVersion(name, v, v.legacy()); err != nil {
		return AnnounceInit{}, err
	}
	p := newParser(name, body)
	var m AnnounceInit
	// Every suffix takes at least one byte, so the count cannot exceed the
	// bytes that follow it.
	n := p.varint("count")
	if p.err == nil && n > uint64(p.d.Remaining()) {
		p.fail("count", fmt.Errorf("%w: %d suffixes in %d bytes", ErrShort, n, p.d.Remaining()))
	}
	if p.err == nil && n > 0 {
		m.Suffixes = make([]string, 0, n)
		for range n {
			m.Suffixes = append(m.Suffixes, p.path("suffix"))
		}
	}
	if err := p.finish(); err != nil {
		return AnnounceInit{}, err
	}
	return m, nil
}

// AppendAnnounce appends a length-prefixed ANNOUNCE message.
//
// In Lite03 and Lite04 the hop count written is max(HopCount, len(HopIDs)).
// In Lite04 the IDs follow; when HopCount exceeds len(HopIDs) the missing
// IDs are written as 0 (unknown), as happens when forwarding an
// announcement received over Lite03. Callers normally keep
// HopCount == len(HopIDs).
func AppendAnnounce(b []byte, v Version, m Announce) []byte {
	mustSupport("announce", v, true)
	b, start := beginMessage(b)
	b = appendBool(b, m.Active)
	b = AppendString(b, m.Suffix)
	if !v.legacy() {
		hops := max(m.HopCount, uint64(len(m.HopIDs)))
		b = AppendVarint(b, hops)
		if v == Lite04 {
			for _, id := range m.HopIDs {
				b = AppendVarint(b, id)
			}
			for range hops - uint64(len(m.HopIDs)) {
				b = append(b, 0)
			}
		}
	}
	return endMessage(b, start)
}

// DecodeAnnounce decodes an ANNOUNCE body. The status must be 0 (ended) or 1
// (active), the suffix is normalised with CleanPath, and a hop count above
// MaxHops is an error wrapping ErrInvalid. HopIDs is nil unless v is Lite04
// and the count is not zero.
func DecodeAnnounce(v Version, body []byte) (Announce, error) {
	const name = "announce"
	if err := checkVersion(name, v, true); err != nil {
		return Announce{}, err
	}
	p := newParser(name, body)
	var m Announce
	m.Active = p.bool("status")
	m.Suffix = p.path("suffix")
	if !v.legacy() {
		n := p.count("hop count", MaxHops)
		m.HopCount = uint64(n)
		if v == Lite04 && n > 0 {
			m.HopIDs = make([]uint64, 0, min(n, p.d.Remaining()))
			for range n {
				m.HopIDs = append(m.HopIDs, p.varint("hop id"))
			}
		}
	}
	if err := p.finish(); err != nil {
		return Announce{}, err
	}
	return m, nil
}
