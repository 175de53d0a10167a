/* gcc places a small constant inside a larger one that holds the same
 * bytes and names it with an alias: ".set .LC1,.LC0+8". Functions using
 * the alias compare through its expression, and patch code gets its own
 * copy of the larger constant. */
typedef long v2di __attribute__((vector_size(16)));

v2di vec(v2di x)
{
	v2di c = { 128, 1 };
	return x + c;
}

float tiny(float x)
{
	return x * 1.40129846e-45f;
}

double smallest(double x)
{
	return x + 4.9406564584124654e-324;
}
