package wire

// Probe (Lite03 and later) reports the sender's estimated bitrate in bits
// per second on a probe stream. RTTms, Lite04 only, is the round-trip time
// in milliseconds. For both, 0 means unknown; a measured RTT of 0 ms is sent
// as 1.
type Probe struct {
	BitrateBps uint64
	RTTms      uint64
}

// AppendProbe appends a length-prefixed PROBE message (without the stream
// type). RTTms is written in Lite04 only. It panics unless v is Lite03 or
// Lite04.
func AppendProbe(b []byte, v Version, m Probe) []byte {
	mustSupport("probe", v, !v.legacy())
	b, start := beginMessage(b)
	b = AppendVarint(b, m.BitrateBps)
	if v == Lite04 {
		b = AppendVarint(b, m.RTTms)
	}
	return endMessage(b, start)
}

// DecodeProbe decodes a PROBE body (Lite03 and Lite04). RTTms is 0 in
// Lite03.
func DecodeProbe(v Version, body []byte) (Probe, error) {
	const name = "probe"
	if err := checkVersion(name, v, !v.legacy()); err != nil {
		return Probe{}, err
	}
	p := newParser(name, body)
	var m Probe
	m.BitrateBps = p.varint("bitrate")
	if v == Lite04 {
		m.RTTms = p.varint("rtt")
	}
	if err := p.finish(); err != nil {
		return Probe{}, err
	}
	return m, nil
}
