/* A static local in another file, changed by the same diff. */
int next_id(void)
{
	static int id;
	id += 1;
	return id;
}
