# hotpatch: patch sections follow
	.section .hotpatch.text,"x",@progbits
	.p2align 4
	.type	four.hotpatch, @function
four.hotpatch:
	movl	%edi, %eax
	movb	hotpatch.ext.opterr(%rip), %ah
	ret
	.size	four.hotpatch, .-four.hotpatch
	.section .hotpatch.funcs,"",@progbits
	.quad	four
	.quad	four.hotpatch
	.quad	.Lhp.name.0
	.quad	0
	.section .hotpatch.strs,"",@progbits
.Lhp.name.0:
	.string	"four"
	.weak	hotpatch.ext.opterr
	.hidden	hotpatch.ext.opterr
