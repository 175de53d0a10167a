/* Directives the differ does not know (here .nop, from inline assembly)
 * are compared as text and pass through into patch code unchanged. */
int padded(int x)
{
	__asm__ volatile(".nop\n\t.nop\n\t.nop");
	return x * 9;
}

int plain(int x)
{
	__asm__ volatile(".nop");
	return x + 9;
}
