/* Drives the case's functions for TestPatchedProgramBehaves. */
void hello(const char *who);
void bye(const char *who);
void both(const char *who);
int main(void)
{
	hello("you");
	bye("you");
	both("all");
	return 0;
}
