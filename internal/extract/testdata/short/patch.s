# hotpatch: patch sections follow
	.section .hotpatch.text,"x",@progbits
	.p2align 4
	.type	four.hotpatch, @function
four.hotpatch:
	leal	40(%rdi), %eax
	movq	hotpatch.ext.stderr(%rip), %rcx
	addl	$1, hotpatch.ext.opterr(%rip)
	leaq	hotpatch.ext.opterr(%rip), %rdx
	ret
	.size	four.hotpatch, .-four.hotpatch
	.type	walled.hotpatch, @function
walled.hotpatch:
	movl	$9, %eax
	ret
	.size	walled.hotpatch, .-walled.hotpatch
	.section .hotpatch.funcs,"",@progbits
	.quad	four
	.quad	four.hotpatch
	.quad	.Lhp.name.0
	.quad	0
	.quad	walled
	.quad	walled.hotpatch
	.quad	.Lhp.name.1
	.quad	0
	.section .hotpatch.strs,"",@progbits
.Lhp.name.0:
	.string	"four"
.Lhp.name.1:
	.string	"walled"
	.weak	hotpatch.ext.stderr
	.hidden	hotpatch.ext.stderr
	.weak	hotpatch.ext.opterr
	.hidden	hotpatch.ext.opterr
