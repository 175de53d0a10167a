package build

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Line-stable patched stage. A fix that adds lines moves __LINE__ (assert,
// logging macros) in every function below it, and those functions would
// then differ from the original although none of their statements did.
// Before the patched stage compiles, every C or C++ file the diffs changed
// gets #line directives (number only, so that __FILE__ stays what the
// compiler would have said) that give each unchanged line its original
// number, and each added line its number in the patched file. Only the
// patched stage sees them: the original stage ran before, and restoring
// the tree puts back the saved original bytes. docs/differ.md explains the
// rules.

// lineStableExts are the files a C or C++ preprocessor reads, where a
// #line directive means what it says.
var lineStableExts = map[string]bool{
	".c": true, ".h": true, ".cc": true, ".cp": true, ".cpp": true, ".cxx": true, ".c++": true, ".C": true,
	".hh": true, ".hpp": true, ".hxx": true, ".h++": true, ".H": true, ".inl": true, ".ipp": true, ".tcc": true,
	".def": true, ".inc": true,
}

// stabilizeLines puts the #line directives into every file of b that the
// diffs changed, and logs what it did.
func stabilizeLines(b *backup, log io.Writer) error {
	for _, e := range b.Entries {
		if !e.Existed || !lineStableExts[filepath.Ext(e.Path)] {
			continue
		}
		full := filepath.Join(b.root, e.Path)
		cur, err := os.ReadFile(full)
		if err != nil {
			continue // the diff deleted it
		}
		orig, err := os.ReadFile(e.Saved)
		if err != nil {
			return fmt.Errorf("keep line numbers of %s: %w", e.Path, err)
		}
		if bytes.Equal(orig, cur) {
			continue
		}
		out, n, why, stuck := lineStable(orig, cur)
		if why != "" {
			fmt.Fprintf(log, "hotpatch: %s keeps its new line numbers: %s\n", e.Path, why)
			continue
		}
		if stuck > 0 {
			fmt.Fprintf(log, "hotpatch: %s: from line %d on, no line outside parentheses, comments and strings "+
				"could take a #line directive; the lines below keep their new numbers, and functions that use "+
				"__LINE__ there may be patched although unchanged\n", e.Path, stuck)
		}
		if n == 0 {
			continue
		}
		// Rewrite in place: the file keeps its mode, and its mtime moves
		// on, which a build that compares times needs anyway.
		if err := os.WriteFile(full, out, 0); err != nil {
			return fmt.Errorf("keep line numbers of %s: %w", e.Path, err)
		}
		fmt.Fprintf(log, "hotpatch: %s: %d #line directives keep the original line numbers of unchanged lines\n", e.Path, n)
	}
	return nil
}

// lineStable returns patched with #line directives inserted, and how many.
// why is set, and nothing inserted, when the file cannot be treated: it
// has line directives of its own. stuck is the 1-based line of patched
// from which a directive was due but no line up to the end could take
// one, or 0.
func lineStable(original, patched []byte) (out []byte, n int, why string, stuck int) {
	b := splitLines(patched)
	ins, stuck, why := directivesFor(splitLines(original), b, patched)
	if why != "" {
		return patched, 0, why, 0
	}
	out = make([]byte, 0, len(patched)+len(ins)*12)
	k := 0
	for i, line := range b {
		for ; k < len(ins) && ins[k].before == i; k++ {
			eol := "\n"
			if bytes.HasSuffix(line, []byte("\r\n")) {
				eol = "\r\n"
			}
			out = append(out, "#line "+strconv.Itoa(ins[k].number)+eol...)
		}
		out = append(out, line...)
	}
	return out, len(ins), "", stuck
}

// directive is one #line to insert: before the patched file's line
// before (0-based), giving it number.
type directive struct{ before, number int }

// lineDirectives says where the directives go, in order, at most one per
// line.
func lineDirectives(original, patched []byte) ([]directive, string) {
	ins, _, why := directivesFor(splitLines(original), splitLines(patched), patched)
	return ins, why
}

func directivesFor(a, b [][]byte, patched []byte) (ins []directive, stuck int, why string) {
	scan := scanLines(patched, len(b))
	if scan.ownLineDirective > 0 {
		return nil, 0, fmt.Sprintf("line %d is a line directive of its own", scan.ownLineDirective)
	}
	match := matchLines(a, b)
	// cur is the number the preprocessor gives line k, if every
	// directive inserted so far took effect.
	cur := 1
	// pending: a conditional group that held a directive ended, so the
	// directive may have been skipped; say the number again.
	pending := false
	type group struct{ had bool }
	var groups []group
	for k := range b {
		want := k + 1
		if match[k] >= 0 {
			want = match[k] + 1
		}
		switch {
		case (want != cur || pending) && scan.safe[k]:
			ins = append(ins, directive{before: k, number: want})
			cur, pending, stuck = want, false, 0
			for g := range groups {
				groups[g].had = true
			}
		case want != cur && stuck == 0:
			stuck = k + 1
		case want == cur && !pending:
			stuck = 0 // the numbers came right again by themselves
		}
		cur++
		switch scan.cond[k] {
		case condIf:
			groups = append(groups, group{})
		case condElse:
			if len(groups) > 0 {
				g := &groups[len(groups)-1]
				pending = pending || g.had
				g.had = false
			}
		case condEndif:
			if len(groups) > 0 {
				pending = pending || groups[len(groups)-1].had
				groups = groups[:len(groups)-1]
			}
		}
	}
	return ins, stuck, ""
}

// splitLines cuts text after each newline; the last line may lack one.
func splitLines(text []byte) [][]byte {
	lines := make([][]byte, 0, bytes.Count(text, []byte{'\n'})+1)
	for len(text) > 0 {
		i := bytes.IndexByte(text, '\n')
		if i < 0 {
			lines = append(lines, text)
			break
		}
		lines = append(lines, text[:i+1])
		text = text[i+1:]
	}
	return lines
}

// Conditional directives, as scanLines reports them per line.
const (
	condNone = iota
	condIf
	condElse // #else, #elif, #elifdef, #elifndef
	condEndif
)

// lineScan is what the preprocessor's view of a file says about each line.
type lineScan struct {
	// safe[k] is set when a directive may stand before line k: the line
	// starts outside comments, strings and raw strings, is not the
	// continuation of a spliced line, and is not inside parentheses
	// (which may be the arguments of a macro invocation).
	safe []bool
	// cond[k] is the conditional directive line k starts, if any.
	cond []uint8
	// ownLineDirective is the 1-based line of a #line or "# 123" of the
	// file itself, or 0.
	ownLineDirective int
}

// scanLines lexes a C or C++ file far enough to know where a directive
// may go: comments, string and character literals (with their prefixes),
// C++ raw strings, digit separators, backslash-newline splices,
// parentheses outside directives, and the directives themselves.
func scanLines(src []byte, nlines int) *lineScan {
	s := &lineScan{safe: make([]bool, nlines), cond: make([]uint8, nlines)}
	const (
		code = iota
		block
		lineComment
		quoted
		raw
	)
	mode := code
	var quote byte
	var rawEnd []byte
	depth := 0
	var depthStack []int // parenthesis depth at each open #if
	directive := false   // inside a directive's logical line
	logicalStart := true // nothing but blanks since the logical line began
	spliced := false     // the current physical line continues the one before
	line := 0
	wordStart := -1 // start of the identifier or number before i, or -1
	lineStart := func(k int) {
		if k < nlines {
			s.safe[k] = mode == code && !spliced && depth == 0
		}
	}
	lineStart(0)
	for i := 0; i < len(src); i++ {
		c := src[i]
		// A backslash before the newline splices two lines, anywhere but
		// inside a raw string.
		if c == '\\' && mode != raw {
			j := i + 1
			for j < len(src) && (src[j] == ' ' || src[j] == '\t' || src[j] == '\r') {
				j++
			}
			if j < len(src) && src[j] == '\n' {
				i = j
				line++
				spliced = true
				lineStart(line)
				continue
			}
		}
		if c == '\n' {
			line++
			spliced = false
			switch mode {
			case lineComment, quoted:
				mode = code // an unterminated literal ends at the line's end, as cpp has it
			}
			if mode == code {
				directive = false
				logicalStart = true
			}
			wordStart = -1
			lineStart(line)
			continue
		}
		switch mode {
		case block:
			if c == '*' && i+1 < len(src) && src[i+1] == '/' {
				mode = code
				i++
			}
			continue
		case lineComment:
			continue
		case quoted:
			switch c {
			case '\\':
				i++
			case quote:
				mode = code
			}
			continue
		case raw:
			if c == ')' && bytes.HasPrefix(src[i:], rawEnd) {
				i += len(rawEnd) - 1
				mode = code
			}
			continue
		}
		// Code.
		isWord := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if isWord || c == '.' && wordStart >= 0 && isDigit(src[wordStart]) {
			if wordStart < 0 {
				wordStart = i
			}
			logicalStart = false
			continue
		}
		word := ""
		if wordStart >= 0 {
			word = string(src[wordStart:i])
		}
		wordStart = -1
		switch c {
		case ' ', '\t', '\r', '\f', '\v':
			continue
		case '/':
			if i+1 < len(src) && src[i+1] == '*' {
				mode = block
				i++
				continue
			}
			if i+1 < len(src) && src[i+1] == '/' {
				mode = lineComment
				continue
			}
		case '#':
			if logicalStart {
				directive = true
				logicalStart = false
				name, end := directiveName(src, i+1)
				switch {
				case name == "line" || name != "" && isDigit(name[0]):
					if s.ownLineDirective == 0 {
						s.ownLineDirective = line + 1
					}
				case name == "if" || name == "ifdef" || name == "ifndef":
					s.cond[line] = condIf
					depthStack = append(depthStack, depth)
				case name == "else" || name == "elif" || name == "elifdef" || name == "elifndef":
					s.cond[line] = condElse
					if len(depthStack) > 0 {
						// Each branch starts where the group did: the
						// branches of "#if A f(a, #else f(b, #endif"
						// each open one parenthesis, not two.
						depth = depthStack[len(depthStack)-1]
					}
				case name == "endif":
					s.cond[line] = condEndif
					if len(depthStack) > 0 {
						depthStack = depthStack[:len(depthStack)-1]
					}
				case name == "include" || name == "include_next" || name == "import":
					// A header name in <...> is no literal: "<it's.h>".
					j := end
					for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
						j++
					}
					if j < len(src) && src[j] == '<' {
						for j < len(src) && src[j] != '>' && src[j] != '\n' {
							j++
						}
						end = j
					}
				}
				i = end - 1
				continue
			}
		case '"':
			if d, ok := rawDelimiter(src, i, word); ok {
				mode, rawEnd = raw, append(append(rawEnd[:0], d...), '"')
				i += len(d) // at the opening parenthesis
			} else {
				mode, quote = quoted, '"'
			}
		case '\'':
			if word != "" && isDigit(word[0]) {
				// A digit separator (1'000), not a character literal.
				wordStart = i - len(word)
				continue
			}
			mode, quote = quoted, '\''
		case '(':
			if !directive {
				depth++
			}
		case ')':
			if !directive && depth > 0 {
				depth--
			}
		}
		logicalStart = false
	}
	return s
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// directiveName reads the name of a directive that starts after '#' at i,
// and returns it with the position after it.
func directiveName(src []byte, i int) (string, int) {
	for i < len(src) && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	j := i
	for j < len(src) && (src[j] == '_' || src[j] >= 'a' && src[j] <= 'z' || src[j] >= 'A' && src[j] <= 'Z' || isDigit(src[j])) {
		j++
	}
	return string(src[i:j]), j
}

// rawDelimiter tells whether the '"' at i opens a raw string (R"d(...)d",
// with an encoding prefix or none), and returns its delimiter.
func rawDelimiter(src []byte, i int, prefix string) (string, bool) {
	switch prefix {
	case "R", "LR", "uR", "UR", "u8R":
	default:
		return "", false
	}
	for j := i + 1; j < len(src) && j-i-1 <= 16; j++ {
		switch src[j] {
		case '(':
			return ")" + string(src[i+1:j]), true
		case ' ', ')', '\\', '\t', '\v', '\f', '\n', '\r':
			return "", false
		}
	}
	return "", false
}

// matchLines pairs lines of b with equal lines of a, in order: for each
// line of b the index of its line in a, or -1 for an added line. Any
// order-keeping pairing of equal lines gives correct code; a good one
// keeps more functions unchanged. It takes the common head and tail; a
// short stretch between them gets a longest common subsequence, a long
// one is cut at lines that occur once on each side (patience diff) and
// the pieces are compared the same way.
func matchLines(a, b [][]byte) []int {
	m := make([]int, len(b))
	for k := range m {
		m[k] = -1
	}
	var rec func(a0, a1, b0, b1 int)
	rec = func(a0, a1, b0, b1 int) {
		for a0 < a1 && b0 < b1 && bytes.Equal(a[a0], b[b0]) {
			m[b0] = a0
			a0++
			b0++
		}
		for a0 < a1 && b0 < b1 && bytes.Equal(a[a1-1], b[b1-1]) {
			m[b1-1] = a1 - 1
			a1--
			b1--
		}
		if a0 == a1 || b0 == b1 {
			return
		}
		if (a1-a0)*(b1-b0) <= 1<<16 {
			lcs(a, b, a0, a1, b0, b1, m)
			return
		}
		anchors := uniqueCommon(a, b, a0, a1, b0, b1)
		if len(anchors) == 0 {
			lcs(a, b, a0, a1, b0, b1, m)
			return
		}
		pa, pb := a0, b0
		for _, x := range anchors {
			rec(pa, x[0], pb, x[1])
			m[x[1]] = x[0]
			pa, pb = x[0]+1, x[1]+1
		}
		rec(pa, a1, pb, b1)
	}
	rec(0, len(a), 0, len(b))
	return m
}

// uniqueCommon finds the lines that occur once in a[a0:a1] and once in
// b[b0:b1], and keeps the longest run of them that is in order on both
// sides.
func uniqueCommon(a, b [][]byte, a0, a1, b0, b1 int) [][2]int {
	type seen struct{ na, nb, ia, ib int }
	count := map[string]*seen{}
	for i := a0; i < a1; i++ {
		k := string(a[i])
		if count[k] == nil {
			count[k] = &seen{}
		}
		count[k].na++
		count[k].ia = i
	}
	for i := b0; i < b1; i++ {
		if x := count[string(b[i])]; x != nil {
			x.nb++
			x.ib = i
		}
	}
	var pairs [][2]int // in b order
	for i := b0; i < b1; i++ {
		if x := count[string(b[i])]; x != nil && x.na == 1 && x.nb == 1 && strings.TrimSpace(string(b[i])) != "" {
			pairs = append(pairs, [2]int{x.ia, i})
		}
	}
	// Longest increasing subsequence of the a positions.
	if len(pairs) == 0 {
		return nil
	}
	tails := []int{} // index into pairs of the smallest tail of each length
	prev := make([]int, len(pairs))
	for k, p := range pairs {
		lo, hi := 0, len(tails)
		for lo < hi {
			mid := (lo + hi) / 2
			if pairs[tails[mid]][0] < p[0] {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		prev[k] = -1
		if lo > 0 {
			prev[k] = tails[lo-1]
		}
		if lo == len(tails) {
			tails = append(tails, k)
		} else {
			tails[lo] = k
		}
	}
	out := make([][2]int, len(tails))
	for k, j := len(tails)-1, tails[len(tails)-1]; k >= 0; k, j = k-1, prev[j] {
		out[k] = pairs[j]
	}
	return out
}

// lcs pairs a[a0:a1] and b[b0:b1] by a longest common subsequence when the
// stretch is small enough for the quadratic table; longer stretches
// without a single anchor stay unpaired (their lines keep new numbers).
func lcs(a, b [][]byte, a0, a1, b0, b1 int, m []int) {
	n, k := a1-a0, b1-b0
	if n*k > 4<<20 {
		return
	}
	t := make([]int32, (n+1)*(k+1))
	at := func(i, j int) *int32 { return &t[i*(k+1)+j] }
	for i := n - 1; i >= 0; i-- {
		for j := k - 1; j >= 0; j-- {
			switch {
			case bytes.Equal(a[a0+i], b[b0+j]):
				*at(i, j) = *at(i+1, j+1) + 1
			case *at(i+1, j) >= *at(i, j+1):
				*at(i, j) = *at(i+1, j)
			default:
				*at(i, j) = *at(i, j+1)
			}
		}
	}
	for i, j := 0, 0; i < n && j < k; {
		switch {
		case bytes.Equal(a[a0+i], b[b0+j]):
			m[b0+j] = a0 + i
			i++
			j++
		case *at(i+1, j) >= *at(i, j+1):
			i++
		default:
			j++
		}
	}
}
