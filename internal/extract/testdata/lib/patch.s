# hotpatch: patch sections follow
	.section .hotpatch.text,"x",@progbits
	.p2align 4
	.type	lib_entry.hotpatch, @function
lib_entry.hotpatch:
	addl	$1, calls(%rip)
	call	hotpatch.ext.lib_hidden
	call	hotpatch.ext.lib_exported@PLT
	call	hotpatch.ext.memcpy@PLT
	movq	.Lhp.got.lib_exported(%rip), %rax
	ret
	.size	lib_entry.hotpatch, .-lib_entry.hotpatch
	.type	lib_entry.cold.hotpatch, @function
lib_entry.cold.hotpatch:
	ud2
	.size	lib_entry.cold.hotpatch, .-lib_entry.cold.hotpatch
	.section .hotpatch.eh_frame,"",@progbits
	.p2align 3
	.quad	lib_entry.hotpatch
	.quad	hotpatch.ext.__gxx_personality_v0
	.section .hotpatch.data,"w",@progbits
	.p2align 3
.Lhp.got.lib_exported:
	.quad	hotpatch.ext.lib_exported
	.section .hotpatch.funcs,"",@progbits
	.quad	lib_entry
	.quad	lib_entry.hotpatch
	.quad	.Lhp.name.0
	.quad	0
	.quad	lib_hidden
	.quad	lib_entry.cold.hotpatch
	.quad	.Lhp.name.1
	.quad	1
	.section .hotpatch.strs,"",@progbits
.Lhp.name.0:
	.string	"lib_entry"
.Lhp.name.1:
	.string	"lib_hidden"
	.weak	hotpatch.ext.lib_hidden
	.hidden	hotpatch.ext.lib_hidden
	.weak	hotpatch.ext.lib_exported
	.hidden	hotpatch.ext.lib_exported
	.weak	hotpatch.ext.memcpy
	.hidden	hotpatch.ext.memcpy
	.weak	hotpatch.ext.__gxx_personality_v0
	.hidden	hotpatch.ext.__gxx_personality_v0
