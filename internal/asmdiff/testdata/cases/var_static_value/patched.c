/* A function-local static keeps its value across calls: changing its
 * initialiser is refused, naming it. */
int next_id(void)
{
	static int id = 2000;
	return id++;
}
