// Package timer schedules Mephisto's timers: fixed intervals and crontab
// specs, against an injectable clock so tests pin time instead of sleeping.
package timer

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Spec is a parsed five-field crontab spec: minute hour day-of-month month
// day-of-week. Each field is *, a number, a range a-b, a list a,b,c, or a
// step */n or a-b/n. Day of week is 0-6 (0 = Sunday; 7 also means Sunday).
// As in cron, when both day fields are restricted a time matches either.
type Spec struct {
	minute, hour, dom, month, dow uint64 // bit sets
	domStar, dowStar              bool
	loc                           *time.Location
	text                          string
}

// ErrBadSpec is returned (wrapped) for a crontab spec that does not parse.
var ErrBadSpec = errors.New("timer: bad crontab spec")

// ParseCron parses spec in time zone loc (nil means UTC).
func ParseCron(spec string, loc *time.Location) (*Spec, error) {
	if loc == nil {
		loc = time.UTC
	}
	f := strings.Fields(spec)
	if len(f) != 5 {
		return nil, fmt.Errorf("%w %q: want 5 fields (minute hour day-of-month month day-of-week), got %d", ErrBadSpec, spec, len(f))
	}
	s := &Spec{loc: loc, text: spec}
	var err error
	fields := []struct {
		dst      *uint64
		lo, hi   int
		name     string
		wildcard *bool
	}{
		{&s.minute, 0, 59, "minute", nil},
		{&s.hour, 0, 23, "hour", nil},
		{&s.dom, 1, 31, "day-of-month", &s.domStar},
		{&s.month, 1, 12, "month", nil},
		{&s.dow, 0, 7, "day-of-week", &s.dowStar},
	}
	for i, fd := range fields {
		if *fd.dst, err = parseField(f[i], fd.lo, fd.hi); err != nil {
			return nil, fmt.Errorf("%w %q: %s: %w", ErrBadSpec, spec, fd.name, err)
		}
		if fd.wildcard != nil {
			*fd.wildcard = f[i] == "*"
		}
	}
	if s.dow&(1<<7) != 0 {
		s.dow |= 1 // 7 is Sunday too
	}
	return s, nil
}

func parseField(f string, lo, hi int) (uint64, error) {
	var set uint64
	for _, part := range strings.Split(f, ",") {
		step := 1
		if i := strings.IndexByte(part, '/'); i >= 0 {
			n, err := strconv.Atoi(part[i+1:])
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("bad step %q", part[i+1:])
			}
			step, part = n, part[:i]
		}
		a, b := lo, hi
		switch {
		case part == "*":
		case strings.Contains(part, "-"):
			x, y, _ := strings.Cut(part, "-")
			var err1, err2 error
			a, err1 = strconv.Atoi(x)
			b, err2 = strconv.Atoi(y)
			if err1 != nil || err2 != nil {
				return 0, fmt.Errorf("bad range %q", part)
			}
		default:
			n, err := strconv.Atoi(part)
			if err != nil {
				return 0, fmt.Errorf("bad value %q", part)
			}
			a, b = n, n
		}
		if a < lo || b > hi || a > b {
			return 0, fmt.Errorf("%q out of range %d-%d", part, lo, hi)
		}
		for v := a; v <= b; v += step {
			set |= 1 << uint(v)
		}
	}
	return set, nil
}

// String returns the spec as written.
func (s *Spec) String() string { return s.text }

// Next returns the first time strictly after t that matches, in the spec's
// time zone (at second 0). It returns the zero time if none exists within
// five years (e.g. 30 February).
func (s *Spec) Next(t time.Time) time.Time {
	t = t.In(s.loc).Truncate(time.Minute).Add(time.Minute)
	end := t.AddDate(5, 0, 0)
	for t.Before(end) {
		var next time.Time
		switch {
		case s.month&(1<<uint(t.Month())) == 0:
			next = time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, s.loc)
		case !s.dayMatches(t):
			next = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, s.loc)
		case s.hour&(1<<uint(t.Hour())) == 0:
			// By duration, not time.Date: an hour skipped by a DST change
			// would normalise backwards and never advance.
			next = t.Add(time.Duration(60-t.Minute()) * time.Minute)
		case s.minute&(1<<uint(t.Minute())) == 0:
			next = t.Add(time.Minute)
		default:
			return t
		}
		if !next.After(t) { // a local midnight that does not exist
			next = t.Add(time.Hour)
		}
		t = next
	}
	return time.Time{}
}

func (s *Spec) dayMatches(t time.Time) bool {
	dom := s.dom&(1<<uint(t.Day())) != 0
	dow := s.dow&(1<<uint(t.Weekday())) != 0
	switch {
	case s.domStar && s.dowStar:
		return true
	case s.domStar:
		return dow
	case s.dowStar:
		return dom
	}
	return dom || dow
}
