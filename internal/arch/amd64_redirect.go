package arch

func init() {
	AMD64.ShortJumpSize = 2
	AMD64.ShortJumpMin, AMD64.ShortJumpMax = -128, 127
	AMD64.encodeShort = func(from, to uint64) []byte {
		// jmp rel8, relative to the end of the instruction.
		return []byte{0xeb, byte(int8(int64(to - (from + 2))))}
	}
}
