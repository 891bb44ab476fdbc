package partition

// Input is a run of records of the partition, in offset order, as a driver
// delivers them: Len records, the i-th of which Read writes into r,
// overwriting all of it. The machine reads each record once, when it is
// delivered, into storage of its own, so a driver need not build the
// records first (and the Input may be dropped once Deliver returns).
type Input interface {
	Len() int
	Read(i int, r *Record)
}

// Records is an Input of records already built.
type Records []Record

// Len returns the number of records.
func (rs Records) Len() int { return len(rs) }

// Read copies record i into r.
func (rs Records) Read(i int, r *Record) { *r = rs[i] }

// recordChunk is how many records a chunk of a recordStore holds: 256
// records of 128 bytes, 32 KiB, the largest of Go's small allocations.
const recordChunk = 256

// recordStore holds the records of a machine's log. Records are added at
// the end and leave from the front once the log no longer holds them, a
// chunk at a time: a chunk that left is cleared (its records point into
// fetched data) and reused, so that once a partition runs, delivering
// records allocates nothing per record. A record's address does not change
// while the log holds it.
type recordStore struct {
	chunks  [][]Record // oldest first; chunks[0][0] is record number base
	free    [][]Record // cleared chunks to reuse
	maxFree int        // chunks kept for reuse at most
	base    uint64     // number of the record at chunks[0][0]
	next    uint64     // number of the record peek returns
}

// peek returns the place of the next record, to be filled and then kept
// with push (or overwritten by the next peek).
func (s *recordStore) peek() *Record {
	i := s.next - s.base
	c := int(i / recordChunk)
	if c == len(s.chunks) {
		var ch []Record
		if n := len(s.free); n > 0 {
			ch, s.free = s.free[n-1], s.free[:n-1]
		} else {
			ch = make([]Record, recordChunk)
		}
		s.chunks = append(s.chunks, ch)
	}
	return &s.chunks[c][i%recordChunk]
}

// push keeps the record peek returned and returns its number.
func (s *recordStore) push() uint64 {
	s.next++
	return s.next - 1
}

// release says that the log holds no record numbered below first: the
// chunks holding only such records are cleared and kept for reuse (all of
// them when the log holds no record at all).
func (s *recordStore) release(first uint64) {
	all := first >= s.next
	k := 0
	for k < len(s.chunks) && (all || first-s.base >= recordChunk) {
		ch := s.chunks[k]
		clear(ch)
		if len(s.free) < s.maxFree {
			s.free = append(s.free, ch)
		}
		s.base += recordChunk
		k++
	}
	if k > 0 {
		n := copy(s.chunks, s.chunks[k:])
		clear(s.chunks[n:])
		s.chunks = s.chunks[:n]
	}
	if all {
		s.base = s.next
	}
}
