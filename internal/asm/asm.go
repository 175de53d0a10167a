// Package asm parses GNU as assembly for x86-64 as gcc and g++ write it
// (AT&T syntax), in one pass over the bytes.
//
// The parser does not interpret instructions. It splits the text into
// statements (labels, directives, instructions, assignments), remembers where
// each one came from, and tracks the section each statement lands in, which is
// what the differ needs to cut a file into functions and data objects. Every
// byte of the input belongs to at most one statement, so callers can copy
// statements through unchanged.
package asm

import (
	"fmt"
	"strings"
)

// Kind says what a statement is.
type Kind uint8

const (
	// Label defines a symbol or a local label at the current location:
	// "name:". Name holds the label without the colon.
	Label Kind = iota + 1
	// Directive is a pseudo-op such as ".long 5"; Name is ".long".
	Directive
	// Instruction is a machine instruction; Name is the mnemonic, with any
	// prefixes in front of it ("rep stosq", "data16 leaq").
	Instruction
	// Assign is "sym = expr"; Name is sym and Args is expr.
	Assign
)

func (k Kind) String() string {
	switch k {
	case Label:
		return "label"
	case Directive:
		return "directive"
	case Instruction:
		return "instruction"
	case Assign:
		return "assignment"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Stmt is one statement. Name and Args are substrings of the source, so a
// parsed file costs no copies of its text.
type Stmt struct {
	Kind Kind
	// Line is the 1-based line the statement starts on.
	Line int32
	// Section indexes File.Sections: where the statement assembles to.
	// Section directives themselves carry the section they switch to.
	Section int32
	// Start and End delimit the statement in the source, comments and
	// surrounding blanks excluded.
	Start, End int32
	Name       string
	// Args is the operand text, trimmed, without comments.
	Args string
}

// Text is the statement as written.
func (s *Stmt) Text(f *File) string { return f.Src[s.Start:s.End] }

// Section is an output section as the statements name it. GNU as identifies
// a section by its name and, for COMDAT sections, its group.
type Section struct {
	Name string
	// Flags are the letters of the flags string ("ax", "aMS", "awG").
	Flags string
	// Type is "@progbits", "@nobits", "@note", "@init_array" and so on;
	// empty when not given.
	Type string
	// Entsize is the entity size of a mergeable (M) section.
	Entsize string
	// Group is the COMDAT group signature of a G section.
	Group string
	// LinkedTo is the symbol of an SHF_LINK_ORDER (o) section.
	LinkedTo string
	// Comdat tells a G section with "comdat" linkage.
	Comdat bool
}

func (s *Section) has(flag byte) bool { return strings.IndexByte(s.Flags, flag) >= 0 }

// Alloc reports whether the section occupies memory at run time.
func (s *Section) Alloc() bool { return s.has('a') }

// Exec reports whether the section holds code.
func (s *Section) Exec() bool { return s.has('x') }

// Write reports whether the section is writable.
func (s *Section) Write() bool { return s.has('w') }

// TLS reports whether the section holds thread-local storage.
func (s *Section) TLS() bool { return s.has('T') }

// NoBits reports whether the section has no contents in the file (bss).
func (s *Section) NoBits() bool { return s.Type == "@nobits" || s.Type == "%nobits" }

// Debug reports whether the section holds debugging information only.
func (s *Section) Debug() bool {
	return strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") ||
		strings.HasPrefix(s.Name, ".gnu.debuglto_")
}

// File is a parsed assembly file.
type File struct {
	// Src is the input, as a string.
	Src      string
	Stmts    []Stmt
	Sections []Section
	// IntelSyntax is set when the file switches to Intel syntax, which
	// the parser's operand scanner does not understand.
	IntelSyntax bool
}

// SyntaxError is input the parser cannot make sense of.
type SyntaxError struct {
	Line   int
	Reason string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Reason) }

// StmtAt returns the statement that contains byte offset off, or -1.
func (f *File) StmtAt(off int) int {
	lo, hi := 0, len(f.Stmts)
	for lo < hi {
		m := (lo + hi) / 2
		if int(f.Stmts[m].End) <= off {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(f.Stmts) && int(f.Stmts[lo].Start) <= off {
		return lo
	}
	return -1
}

// Options tune the parser.
type Options struct {
	// SkipDebug leaves out the statements of debug sections (.debug_*),
	// except the directives that switch sections. Their text stays in
	// Src. With -g, debug sections hold most of the statements of a file,
	// and a caller that compares code has no use for them.
	SkipDebug bool
}

// Parse splits src into statements. It never panics; it returns a
// *SyntaxError for an unterminated string or comment and for a
// .popsection without a matching .pushsection.
func Parse(src []byte) (*File, error) {
	return ParseString(string(src))
}

// ParseString is Parse for a string, without the copy.
func ParseString(src string) (*File, error) { return ParseWith(src, Options{}) }

// ParseWith is ParseString with options.
func ParseWith(src string, opts Options) (*File, error) {
	p := parser{f: &File{Src: src}, opts: opts}
	// About one statement per line; fewer when debug sections are left
	// out, where they are the bulk.
	lines := strings.Count(src, "\n") + 1
	if opts.SkipDebug {
		lines /= 3
	}
	p.f.Stmts = make([]Stmt, 0, lines+16)
	p.secIndex = map[sectionKey]int32{}
	p.cur = p.section(Section{Name: ".text", Flags: "ax", Type: "@progbits"}, true)
	p.prev = p.cur
	if err := p.run(); err != nil {
		return p.f, err
	}
	return p.f, nil
}

type sectionKey struct{ name, group string }

type parser struct {
	f    *File
	opts Options
	// inDebug caches whether the current section is a debug section.
	inDebug   bool
	line      int32
	cur, prev int32
	stack     [][2]int32
	secIndex  map[sectionKey]int32
	err       error
}

func (p *parser) fail(reason string) {
	if p.err == nil {
		p.err = &SyntaxError{Line: int(p.line), Reason: reason}
	}
}

// run walks the source line by line. A statement ends at a newline or a
// ';' outside quotes; '#' starts a comment that runs to the end of the
// line, and /* */ comments may span lines.
func (p *parser) run() error {
	src := p.f.Src
	n := len(src)
	i := 0
	p.line = 1
	for i < n {
		// Skip blanks at the start of a statement.
		for i < n && (src[i] == ' ' || src[i] == '\t' || src[i] == '\r' || src[i] == '\f' || src[i] == '\v') {
			i++
		}
		if i >= n {
			break
		}
		switch c := src[i]; {
		case c == '\n':
			p.line++
			i++
			continue
		case c == ';':
			i++
			continue
		case c == '#':
			for i < n && src[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < n && src[i+1] == '*':
			i = p.skipBlockComment(i)
			continue
		}
		// A statement: find its end, honouring quotes and comments.
		start := i
		startLine := p.line
		end := i
		for i < n {
			c := src[i]
			if c == '\n' || c == ';' || c == '#' {
				break
			}
			if c == '/' && i+1 < n && src[i+1] == '*' {
				break
			}
			if c == '"' {
				i = p.skipString(i)
				end = i
				continue
			}
			if c == '\'' && i+1 < n {
				// A character constant such as 'a or '\n: never a
				// separator, whatever follows.
				i += 2
				if src[i-1] == '\\' && i < n {
					i++
				}
				end = i
				continue
			}
			i++
			if c != ' ' && c != '\t' && c != '\r' {
				end = i
			}
		}
		if end > n {
			end = n
		}
		p.statements(int32(start), int32(end), startLine)
	}
	return p.err
}

func (p *parser) skipBlockComment(i int) int {
	src := p.f.Src
	j := strings.Index(src[i+2:], "*/")
	if j < 0 {
		p.fail("unterminated /* comment")
		p.line += int32(strings.Count(src[i:], "\n"))
		return len(src)
	}
	p.line += int32(strings.Count(src[i:i+2+j], "\n"))
	return i + 2 + j + 2
}

// skipString returns the offset just past the string that starts at i.
func (p *parser) skipString(i int) int {
	src := p.f.Src
	i++
	for i < len(src) {
		switch src[i] {
		case '\\':
			i += 2
			continue
		case '"':
			return i + 1
		case '\n':
			p.fail("unterminated string")
			return i
		}
		i++
	}
	p.fail("unterminated string")
	return len(src)
}

// statements parses the text in [start,end), which holds one statement
// after any number of labels.
func (p *parser) statements(start, end int32, line int32) {
	src := p.f.Src
	i := start
	for i < end {
		// Labels: a name (or a number, or a quoted name) and a colon.
		j := i
		if src[j] == '"' {
			j = int32(p.skipString(int(j)))
			if j > end {
				j = end
			}
		} else {
			for j < end && isIdentByte(src[j]) {
				j++
			}
		}
		if j > i && j < end && src[j] == ':' && (j+1 >= end || src[j+1] != ':') {
			p.emit(Stmt{Kind: Label, Line: line, Start: i, End: j + 1, Name: src[i:j]})
			i = skipBlanks(src, j+1, end)
			continue
		}
		break
	}
	if i >= end {
		return
	}
	// The first word: a directive, a mnemonic, or the symbol of an
	// assignment.
	j := i
	for j < end && src[j] != ' ' && src[j] != '\t' && (src[j] != '=' || j == i) {
		j++
	}
	name := src[i:j]
	rest := skipBlanks(src, j, end)
	if rest < end && src[rest] == '=' && (rest+1 >= end || src[rest+1] != '=') {
		p.emit(Stmt{Kind: Assign, Line: line, Start: i, End: end, Name: name,
			Args: src[skipBlanks(src, rest+1, end):end]})
		return
	}
	if name[0] == '.' {
		st := Stmt{Kind: Directive, Line: line, Start: i, End: end, Name: name, Args: src[rest:end]}
		p.directive(&st)
		return
	}
	// Fold instruction prefixes into the mnemonic, so that the operands
	// of "rep stosq" or "data16 leaq x@tlsgd(%rip), %rdi" are operands.
	for word := name; isPrefix(word) && rest < end; {
		k := rest
		for k < end && src[k] != ' ' && src[k] != '\t' {
			k++
		}
		word = src[rest:k]
		j = k
		name = src[i:j]
		rest = skipBlanks(src, j, end)
	}
	p.emit(Stmt{Kind: Instruction, Line: line, Start: i, End: end, Name: name, Args: src[rest:end]})
}

func skipBlanks(src string, i, end int32) int32 {
	for i < end && (src[i] == ' ' || src[i] == '\t') {
		i++
	}
	return i
}

var prefixes = map[string]bool{
	"rep": true, "repe": true, "repz": true, "repne": true, "repnz": true,
	"lock": true, "data16": true, "data32": true, "addr16": true, "addr32": true,
	"rex": true, "rex64": true, "rex.w": true, "rex.W": true, "notrack": true, "bnd": true,
	"xacquire": true, "xrelease": true, "cs": true, "ds": true, "es": true,
	"fs": true, "gs": true, "ss": true, "{vex}": true, "{vex3}": true, "{evex}": true,
}

func isPrefix(w string) bool { return prefixes[w] }

func (p *parser) emit(st Stmt) {
	if p.inDebug && p.opts.SkipDebug && (st.Kind != Directive || ClassOf(st.Name) != SectionSwitch) {
		return
	}
	st.Section = p.cur
	p.f.Stmts = append(p.f.Stmts, st)
}

// directive records the statement and follows section changes.
func (p *parser) directive(st *Stmt) {
	switch st.Name {
	case ".text", ".data", ".bss":
		p.switchTo(p.section(Section{Name: st.Name}, false))
	case ".section":
		sec, ok := ParseSectionArgs(st.Args)
		if !ok {
			p.fail(".section without a name")
			break
		}
		p.switchTo(p.section(sec, false))
	case ".pushsection":
		sec, ok := ParseSectionArgs(st.Args)
		if !ok {
			p.fail(".pushsection without a name")
			break
		}
		p.stack = append(p.stack, [2]int32{p.cur, p.prev})
		p.switchTo(p.section(sec, false))
	case ".popsection":
		if len(p.stack) == 0 {
			p.fail(".popsection without .pushsection")
			break
		}
		top := p.stack[len(p.stack)-1]
		p.stack = p.stack[:len(p.stack)-1]
		p.cur, p.prev = top[0], top[1]
	case ".previous":
		p.cur, p.prev = p.prev, p.cur
	case ".intel_syntax":
		p.f.IntelSyntax = true
	case ".att_syntax":
		p.f.IntelSyntax = false
	}
	p.inDebug = p.f.Sections[p.cur].Debug()
	p.emit(*st)
}

func (p *parser) switchTo(s int32) {
	if s != p.cur {
		p.prev = p.cur
	}
	p.cur = s
}

// section returns the index of sec, adding it when new. A later mention of
// a section by name alone refers to the one already declared.
func (p *parser) section(sec Section, initial bool) int32 {
	key := sectionKey{sec.Name, sec.Group}
	if idx, ok := p.secIndex[key]; ok {
		return idx
	}
	if sec.Flags == "" && sec.Type == "" {
		sec.Flags, sec.Type = DefaultFlags(sec.Name)
	} else if sec.Type == "" {
		_, sec.Type = DefaultFlags(sec.Name)
	}
	idx := int32(len(p.f.Sections))
	p.f.Sections = append(p.f.Sections, sec)
	p.secIndex[key] = idx
	_ = initial
	return idx
}

// DefaultFlags returns the flags and type GNU as gives a section known by
// name only.
func DefaultFlags(name string) (flags, typ string) {
	switch {
	case name == ".text" || strings.HasPrefix(name, ".text."):
		return "ax", "@progbits"
	case name == ".bss" || strings.HasPrefix(name, ".bss.") || strings.HasPrefix(name, ".gnu.linkonce.b."):
		return "aw", "@nobits"
	case name == ".tbss" || strings.HasPrefix(name, ".tbss."):
		return "awT", "@nobits"
	case name == ".tdata" || strings.HasPrefix(name, ".tdata."):
		return "awT", "@progbits"
	case name == ".data" || strings.HasPrefix(name, ".data."):
		return "aw", "@progbits"
	case name == ".rodata" || strings.HasPrefix(name, ".rodata."):
		return "a", "@progbits"
	case name == ".init_array" || strings.HasPrefix(name, ".init_array."):
		return "aw", "@init_array"
	case name == ".fini_array" || strings.HasPrefix(name, ".fini_array."):
		return "aw", "@fini_array"
	case name == ".preinit_array" || strings.HasPrefix(name, ".preinit_array."):
		return "aw", "@preinit_array"
	case name == ".ctors" || name == ".dtors" || strings.HasPrefix(name, ".ctors.") || strings.HasPrefix(name, ".dtors."):
		return "aw", "@progbits"
	case name == ".gcc_except_table" || strings.HasPrefix(name, ".gcc_except_table."):
		return "a", "@progbits"
	case name == ".eh_frame":
		return "a", "@unwind"
	case strings.HasPrefix(name, ".note"):
		return "", "@note"
	case name == ".init" || name == ".fini":
		return "ax", "@progbits"
	}
	return "", "@progbits"
}

// ParseSectionArgs reads the operands of .section or .pushsection:
// name [, "flags" [, @type [, entsize] [, linked-to] [, group [, comdat]]]].
func ParseSectionArgs(args string) (Section, bool) {
	parts := SplitArgs(args)
	if len(parts) == 0 || parts[0] == "" {
		return Section{}, false
	}
	var sec Section
	sec.Name = unquote(parts[0])
	// ".section name" followed by a blank and a subsection number is an
	// old form; keep the name only.
	if k := strings.IndexAny(sec.Name, " \t"); k > 0 && parts[0][0] != '"' {
		sec.Name = sec.Name[:k]
	}
	if len(parts) < 2 {
		return sec, true
	}
	sec.Flags = unquote(parts[1])
	if len(parts) < 3 {
		return sec, true
	}
	sec.Type = parts[2]
	rest := parts[3:]
	if strings.IndexByte(sec.Flags, 'M') >= 0 && len(rest) > 0 {
		sec.Entsize, rest = rest[0], rest[1:]
	}
	if strings.IndexByte(sec.Flags, 'o') >= 0 && len(rest) > 0 {
		sec.LinkedTo, rest = rest[0], rest[1:]
	}
	if strings.IndexByte(sec.Flags, 'G') >= 0 && len(rest) > 0 {
		sec.Group, rest = unquote(rest[0]), rest[1:]
		if len(rest) > 0 && rest[0] == "comdat" {
			sec.Comdat = true
		}
	}
	return sec, true
}

func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// SplitArgs splits operands at top-level commas (outside quotes and
// brackets) and trims each one. Empty operands are kept: ".p2align 4,,10"
// has three.
func SplitArgs(args string) []string {
	if strings.TrimSpace(args) == "" {
		return nil
	}
	var out []string
	depth := 0
	start := 0
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case '"':
			i++
			for i < len(args) && args[i] != '"' {
				if args[i] == '\\' {
					i++
				}
				i++
			}
		case '(', '[':
			depth++
		case ')', ']':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				out = append(out, strings.TrimSpace(args[start:i]))
				start = i + 1
			}
		}
	}
	if start <= len(args) {
		out = append(out, strings.TrimSpace(args[start:]))
	}
	return out
}

// FirstArg returns the first top-level operand of args, trimmed.
func FirstArg(args string) string {
	depth := 0
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case '"':
			i++
			for i < len(args) && args[i] != '"' {
				if args[i] == '\\' {
					i++
				}
				i++
			}
		case '(':
			depth++
		case ')':
			if depth > 0 {
				depth--
			}
		case ',':
			if depth == 0 {
				return strings.TrimSpace(args[:i])
			}
		}
	}
	return strings.TrimSpace(args)
}
