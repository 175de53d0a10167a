package asm

// Ref is a symbol reference inside operand text: a name, and the
// relocation modifier written after it ("foo@PLT", "x@tpoff").
type Ref struct {
	// Off and Len delimit the name within the operand text.
	Off, Len int32
	// ModLen is the length of the "@modifier" that follows the name,
	// '@' included; 0 when there is none.
	ModLen int32
}

// Name returns the referenced symbol.
func (r Ref) Name(args string) string { return args[r.Off : r.Off+r.Len] }

// Modifier returns the relocation modifier without '@', or "".
func (r Ref) Modifier(args string) string {
	if r.ModLen == 0 {
		return ""
	}
	return args[r.Off+r.Len+1 : r.Off+r.Len+r.ModLen]
}

// End is the offset just past the reference, modifier included.
func (r Ref) End() int32 { return r.Off + r.Len + r.ModLen }

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '.'
}

func isIdentByte(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$'
}

// Refs appends to dst the symbol references in operand or expression text,
// in order, and returns the extended slice. Registers (%rax), relocation
// modifiers standing alone (@function), numbers, numeric local label
// references (1b, 2f), the location counter (.) and strings are not
// references. In AT&T syntax a leading '$' marks an immediate and is not
// part of the name.
func Refs(args string, dst []Ref) []Ref {
	n := int32(len(args))
	for i := int32(0); i < n; {
		c := args[i]
		switch {
		case c == '"':
			i++
			for i < n && args[i] != '"' {
				if args[i] == '\\' {
					i++
				}
				i++
			}
			i++
		case c == '\'':
			i += 2
		case c == '%' || c == '@':
			i++
			for i < n && isIdentByte(args[i]) {
				i++
			}
		case c >= '0' && c <= '9':
			for i < n && isIdentByte(args[i]) {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < n && isIdentByte(args[i]) {
				i++
			}
			if i-start == 1 && c == '.' {
				continue
			}
			r := Ref{Off: start, Len: i - start}
			if i < n && args[i] == '@' {
				j := i + 1
				for j < n && isIdentByte(args[j]) {
					j++
				}
				r.ModLen = j - i
				i = j
			}
			dst = append(dst, r)
		default:
			i++
		}
	}
	return dst
}

// IsLocalLabel reports whether name is an assembler-local label (".L..."),
// which never reaches the object's symbol table.
func IsLocalLabel(name string) bool {
	return len(name) >= 2 && name[0] == '.' && name[1] == 'L'
}

// IsNumericLabel reports whether name is a numeric local label ("1").
func IsNumericLabel(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return false
		}
	}
	return true
}

// DirectiveClass sorts directives by what they do to the output.
type DirectiveClass uint8

const (
	// Other directives do not emit bytes: symbol attributes (.globl,
	// .type, .size), section changes, debug line information and
	// anything unknown.
	Other DirectiveClass = iota
	// Data directives emit bytes: .long, .string, .zero, .uleb128...
	Data
	// Align directives pad to an alignment: .p2align, .align, .balign.
	Align
	// CFI directives describe call frames: .cfi_*.
	CFI
	// DebugLine directives feed the line table: .loc, .file,
	// .loc_mark_labels.
	DebugLine
	// Attribute directives give symbols properties: .globl, .weak, .local,
	// .hidden, .protected, .internal, .type, .size, .symver.
	Attribute
	// SectionSwitch directives change the current section.
	SectionSwitch
)

var directiveClasses = map[string]DirectiveClass{
	".byte": Data, ".short": Data, ".value": Data, ".word": Data, ".hword": Data,
	".2byte": Data, ".int": Data, ".long": Data, ".4byte": Data, ".quad": Data,
	".8byte": Data, ".octa": Data, ".dc": Data, ".dc.a": Data, ".dc.b": Data,
	".dc.w": Data, ".dc.l": Data, ".dc.d": Data, ".dc.s": Data, ".dc.x": Data,
	".ascii": Data, ".asciz": Data, ".string": Data, ".string8": Data,
	".string16": Data, ".string32": Data, ".string64": Data, ".zero": Data,
	".skip": Data, ".space": Data, ".fill": Data, ".uleb128": Data,
	".sleb128": Data, ".float": Data, ".single": Data, ".double": Data,
	".tfloat": Data, ".incbin": Data, ".nops": Data, ".reloc": Data,
	".align": Align, ".p2align": Align, ".balign": Align, ".balignw": Align,
	".balignl": Align, ".p2alignw": Align, ".p2alignl": Align,
	".loc": DebugLine, ".file": DebugLine, ".loc_mark_labels": DebugLine,
	".globl": Attribute, ".global": Attribute, ".weak": Attribute, ".local": Attribute,
	".hidden": Attribute, ".protected": Attribute, ".internal": Attribute,
	".type": Attribute, ".size": Attribute, ".symver": Attribute, ".weakref": Attribute,
	".text": SectionSwitch, ".data": SectionSwitch, ".bss": SectionSwitch,
	".section": SectionSwitch, ".pushsection": SectionSwitch,
	".popsection": SectionSwitch, ".previous": SectionSwitch, ".subsection": SectionSwitch,
}

// ClassOf returns the class of a directive name such as ".long".
func ClassOf(name string) DirectiveClass {
	if c, ok := directiveClasses[name]; ok {
		return c
	}
	if len(name) > 5 && name[:5] == ".cfi_" {
		return CFI
	}
	return Other
}
