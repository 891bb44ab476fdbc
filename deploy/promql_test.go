package deploy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// promqlRefs are the series names and label names a PromQL expression
// refers to.
type promqlRefs struct {
	metrics []string // series names, in order of appearance, each once
	labels  []string // label names in matchers, by/without, on/ignoring, group_left/right
}

// PromQL's aggregation operators and keywords: identifiers that are not
// series names.
var (
	promqlAggregations = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
		"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
	promqlKeywords   = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
	promqlLabelLists = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
)

// parsePromQL finds the series names and label names expr refers to. It
// is a lexer, not a parser: a series name is an identifier that is not
// a function (followed by "("), an operator or a keyword, and not inside
// a label matcher's braces, a range's brackets, a string or a label list.
// Grafana's variables ($node, ${node}, $__rate_interval) are skipped.
// It refuses what it cannot read: unbalanced brackets, stray characters.
func parsePromQL(expr string) (promqlRefs, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return promqlRefs{}, err
	}
	var r promqlRefs
	addMetric := func(m string) {
		if !slices.Contains(r.metrics, m) {
			r.metrics = append(r.metrics, m)
		}
	}
	addLabel := func(l string) {
		if !slices.Contains(r.labels, l) {
			r.labels = append(r.labels, l)
		}
	}
	var stack []string // open brackets
	for i := 0; i < len(toks); i++ {
		tk := toks[i]
		switch tk.kind {
		case tokOpen:
			stack = append(stack, tk.text)
		case tokClose:
			want := map[string]string{")": "(", "]": "[", "}": "{"}[tk.text]
			if len(stack) == 0 || stack[len(stack)-1] != want {
				return r, fmt.Errorf("unbalanced %q at offset %d", tk.text, tk.pos)
			}
			stack = stack[:len(stack)-1]
		case tokIdent:
			inBraces := len(stack) > 0 && stack[len(stack)-1] == "{"
			inBrackets := len(stack) > 0 && stack[len(stack)-1] == "["
			next := token{}
			if i+1 < len(toks) {
				next = toks[i+1]
			}
			switch {
			case inBrackets:
			case inBraces:
				// A label matcher: name, operator, string.
				if tk.text == "__name__" && i+2 < len(toks) && toks[i+2].kind == tokString {
					addMetric(toks[i+2].text)
				} else {
					addLabel(tk.text)
				}
			case slices.Contains(promqlLabelLists, tk.text):
				if next.kind == tokOpen && next.text == "(" {
					j := i + 2
					for ; j < len(toks) && !(toks[j].kind == tokClose && toks[j].text == ")"); j++ {
						switch {
						case toks[j].kind == tokIdent:
							addLabel(toks[j].text)
						case toks[j].kind == tokPunct && toks[j].text == ",":
						default:
							return r, fmt.Errorf("%s (...): unexpected %q at offset %d", tk.text, toks[j].text, toks[j].pos)
						}
					}
					if j == len(toks) {
						return r, fmt.Errorf("%s ( without its )", tk.text)
					}
					i = j // past the list and its ")"
				}
			case next.kind == tokOpen && next.text == "(":
				// A function or an aggregation: not a series.
			case slices.Contains(promqlAggregations, tk.text), slices.Contains(promqlKeywords, strings.ToLower(tk.text)):
			default:
				addMetric(tk.text)
			}
		}
	}
	if len(stack) > 0 {
		return r, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return r, nil
}

type tokKind int

const (
	tokIdent tokKind = iota + 1
	tokString
	tokNumber
	tokOpen
	tokClose
	tokPunct
	tokVar
)

type token struct {
	kind tokKind
	text string // a string's unquoted value
	pos  int
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func lexPromQL(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // a comment, to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			var b strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && c != '`' && j+1 < len(s) {
					j++
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at offset %d", i)
			}
			toks = append(toks, token{tokString, b.String(), i})
			i = j + 1
		case c == '$': // a Grafana variable: $name, ${name}, ${name:fmt}
			j := i + 1
			if j < len(s) && s[j] == '{' {
				end := strings.IndexByte(s[j:], '}')
				if end < 0 {
					return nil, fmt.Errorf("unterminated ${ at offset %d", i)
				}
				j += end + 1
			} else {
				for j < len(s) && isIdentPart(s[j]) {
					j++
				}
			}
			toks = append(toks, token{tokVar, s[i:j], i})
			i = j
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, s[i:j], i})
			i = j
		case c >= '0' && c <= '9' || c == '.':
			j := i // numbers and durations: 0.99, 1e-3, 5m, 1h30m
			for j < len(s) && (isIdentPart(s[j]) || s[j] == '.' || (s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			toks = append(toks, token{tokNumber, s[i:j], i})
			i = j
		case strings.IndexByte("([{", c) >= 0:
			toks = append(toks, token{tokOpen, string(c), i})
			i++
		case strings.IndexByte(")]}", c) >= 0:
			toks = append(toks, token{tokClose, string(c), i})
			i++
		case strings.IndexByte("+-*/%^=!<>~,:@", c) >= 0:
			toks = append(toks, token{tokPunct, string(c), i})
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
	return toks, nil
}

func TestParsePromQL(t *testing.T) {
	for _, c := range []struct {
		expr            string
		metrics, labels []string
	}{
		{`up`, []string{"up"}, nil},
		{`sum(up{job="mephisto"})`, []string{"up"}, []string{"job"}},
		{`16 * sum by (agent) (rate(mephisto_processing_seconds_count{app=~"$app", node=~"$node"}[$__rate_interval]))`,
			[]string{"mephisto_processing_seconds_count"}, []string{"agent", "app", "node"}},
		{`histogram_quantile(0.99, sum by (agent, le) (rate(x_bucket{a="}"}[5m])))`, []string{"x_bucket"}, []string{"agent", "le", "a"}},
		{`a + on (instance) group_left (node) (0 * b{c!~"x,y"})`, []string{"a", "b"}, []string{"instance", "node", "c"}},
		{`sum without (p) (rate(a[1h30m] offset 5m)) / ignoring(q) count(b) > bool 1e-3`, []string{"a", "b"}, []string{"p", "q"}},
		{`max(changes(g{app=~"${app:regex}"}[$__range])) and sum(1 - up)`, []string{"g", "up"}, []string{"app"}},
		{`{__name__="named", x="y"}`, []string{"named"}, []string{"x"}},
		{`a unless b or c`, []string{"a", "b", "c"}, nil},
	} {
		r, err := parsePromQL(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !slices.Equal(r.metrics, c.metrics) || !slices.Equal(r.labels, c.labels) {
			t.Errorf("%s:\n metrics %q, labels %q\nwant %q, %q", c.expr, r.metrics, r.labels, c.metrics, c.labels)
		}
	}
	for _, bad := range []string{`sum(a`, `a{b="c"`, `rate(a[5m)`, `a)`, `a{b="c}`, `a ; b`, `sum by (a b`} {
		if r, err := parsePromQL(bad); err == nil {
			t.Errorf("%s: no error (metrics %q, labels %q)", bad, r.metrics, r.labels)
		}
	}
}
