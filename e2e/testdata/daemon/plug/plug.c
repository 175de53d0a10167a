/* A library the host program loads with dlopen. */
__attribute__((noipa)) const char *plug_message(void) { return "plug-old"; }
