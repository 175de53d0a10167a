# hotpatch: patch sections follow
	.section .hotpatch.text,"x",@progbits
	.p2align 4
	.type	compute.hotpatch, @function
compute.hotpatch:
	movl	counter(%rip), %eax
	addl	$2, %eax
	movl	%eax, counter(%rip)
	movl	%fs:tlsvar@tpoff, %edx
	addl	%edx, %eax
	addl	new_counter(%rip), %eax
	movq	.Lhp.got.stdout(%rip), %rcx
	movq	.Lhp.tpoff.ext_tls(%rip), %rcx
	leaq	.Lhp.LC9(%rip), %rdi
	call	hotpatch.ext.puts@PLT
	call	hotpatch.ext.printf@PLT
	movq	hotpatch.ext.stdout(%rip), %rsi
	call	hotpatch.ext.memcpy@PLT
	call	compute
	movl	shared_value(%rip), %eax
	ret
	.size	compute.hotpatch, .-compute.hotpatch
	.globl	new_func
	.hidden	new_func
	.type	new_func, @function
new_func:
	ret
	.size	new_func, .-new_func
	.section .hotpatch.rodata,"",@progbits
.Lhp.LC9:
	.string	"patched"
	.section .hotpatch.data,"w",@progbits
	.p2align 3
.Lhp.got.stdout:
	.quad	hotpatch.ext.stdout
.Lhp.tpoff.ext_tls:
	.quad	hotpatch.tpoff.ext_tls
.Lhp.tlsgd.ext_tls:
	.quad	hotpatch.dtpmod.ext_tls
	.quad	hotpatch.dtpoff.ext_tls
	.section .hotpatch.bss,"w",@nobits
	.p2align 2
	.globl	new_counter
	.hidden	new_counter
	.type	new_counter, @object
	.size	new_counter, 4
new_counter:
	.zero	4
	.section .hotpatch.funcs,"",@progbits
	.quad	compute
	.quad	compute.hotpatch
	.quad	.Lhp.name.0
	.quad	0
	.section .hotpatch.strs,"",@progbits
.Lhp.name.0:
	.string	"compute"
	.weak	hotpatch.ext.printf
	.hidden	hotpatch.ext.printf
	.weak	hotpatch.ext.puts
	.hidden	hotpatch.ext.puts
	.weak	hotpatch.ext.memcpy
	.hidden	hotpatch.ext.memcpy
	.weak	hotpatch.ext.stdout
	.hidden	hotpatch.ext.stdout
	.weak	hotpatch.tpoff.ext_tls
	.hidden	hotpatch.tpoff.ext_tls
	.weak	hotpatch.dtpmod.ext_tls
	.hidden	hotpatch.dtpmod.ext_tls
	.weak	hotpatch.dtpoff.ext_tls
	.hidden	hotpatch.dtpoff.ext_tls
