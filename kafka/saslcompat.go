package kafka

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// kfake implements SaslHandshake v1 only and lists it in ApiVersions as
// versions 1–1. Apache Kafka lists 0–1, and librdkafka (kcat,
// confluent-kafka, …) refuses to authenticate to a broker whose list does
// not start at 0 ("SASL Handshake not supported by broker"), although it
// then uses v1. So the embedded broker's connections pass through
// saslCompatConn, which rewrites that one number in ApiVersions responses;
// with TLS, the listener also does the handshake (kfake would, on top of
// it, and the rewriting needs the plaintext).

// saslCompatListener wraps the connections a kfake broker accepts.
type saslCompatListener struct {
	net.Listener
	tls *tls.Config // nil: plaintext
}

// Accept returns the next connection, in TLS if configured, with its
// ApiVersions responses rewritten.
func (l saslCompatListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tls != nil {
		c = tls.Server(c, l.tls)
	}
	return &saslCompatConn{Conn: c, pending: map[int32]int16{}}, nil
}

// saslCompatConn notes the ApiVersions requests read from the client and
// rewrites their responses as they are written.
type saslCompatConn struct {
	net.Conn

	rmu  sync.Mutex // guards the fields below, for Read
	hdr  []byte     // the start of the request being read: size, key, version, correlation id
	skip int        // bytes of the current request still to pass

	mu      sync.Mutex      // guards pending, between Read and Write
	pending map[int32]int16 // correlation id → version of an ApiVersions request

	wmu  sync.Mutex // serializes Write, guards wbuf
	wbuf []byte     // a response written in part
}

// Read reads and notes the ApiVersions requests in what it read.
func (c *saslCompatConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.rmu.Lock()
	for q := p[:n]; len(q) > 0; {
		if c.skip > 0 {
			k := min(c.skip, len(q))
			c.skip -= k
			q = q[k:]
			continue
		}
		k := min(12-len(c.hdr), len(q))
		c.hdr = append(c.hdr, q[:k]...)
		q = q[k:]
		if len(c.hdr) == 12 {
			size := int(binary.BigEndian.Uint32(c.hdr[:4]))
			key := int16(binary.BigEndian.Uint16(c.hdr[4:6]))
			if key == int16(kmsg.ApiVersions) {
				c.mu.Lock()
				c.pending[int32(binary.BigEndian.Uint32(c.hdr[8:12]))] = int16(binary.BigEndian.Uint16(c.hdr[6:8]))
				c.mu.Unlock()
			}
			c.skip = size - 8
			c.hdr = c.hdr[:0]
		}
	}
	c.rmu.Unlock()
	return n, err
}

// Write writes whole responses, an ApiVersions response rewritten.
func (c *saslCompatConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf = append(c.wbuf, p...)
	for len(c.wbuf) >= 8 {
		size := int(binary.BigEndian.Uint32(c.wbuf[:4]))
		if len(c.wbuf) < 4+size {
			break
		}
		frame := c.wbuf[:4+size]
		corr := int32(binary.BigEndian.Uint32(frame[4:8]))
		c.mu.Lock()
		version, ok := c.pending[corr]
		delete(c.pending, corr)
		c.mu.Unlock()
		if ok {
			frame = listSASLHandshakeV0(frame, version)
		}
		if _, err := c.Conn.Write(frame); err != nil {
			c.wbuf = nil
			return 0, err
		}
		c.wbuf = c.wbuf[4+size:]
	}
	if len(c.wbuf) == 0 {
		c.wbuf = nil
	}
	return len(p), nil
}

// listSASLHandshakeV0 returns the ApiVersions response frame with
// SaslHandshake listed from version 0, or frame as it is when it does not
// parse (a version error's v0 answer to a newer request).
func listSASLHandshakeV0(frame []byte, version int16) []byte {
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = version
	if err := resp.ReadFrom(frame[8:]); err != nil { // the response header is never flexible for ApiVersions
		return frame
	}
	changed := false
	for i := range resp.ApiKeys {
		if k := &resp.ApiKeys[i]; k.ApiKey == int16(kmsg.SASLHandshake) && k.MinVersion == 1 {
			k.MinVersion, changed = 0, true
		}
	}
	if !changed {
		return frame
	}
	body := resp.AppendTo(nil)
	out := make([]byte, 8, 8+len(body))
	binary.BigEndian.PutUint32(out[:4], uint32(4+len(body)))
	copy(out[4:8], frame[4:8])
	return append(out, body...)
}
