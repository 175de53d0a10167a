/* Load and smoke test for libexpat: worker threads parse a document
 * without pause (the load the patch goes in under), and the main thread
 * prints, every 20 ms, what the fixed functions answer:
 *   stop-unstarted=S/E  XML_StopParser on a parser that never started
 *                       (CVE-2024-50602: 1/0 before the fix, 0/44 after)
 *   parsed=N            documents parsed so far, all well-formed
 * Build: gcc -O2 -pthread load.c -o load -lexpat (or -lexpatw with
 * -DXML_UNICODE). */
#include <expat.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char doc[] =
	"<?xml version='1.0'?><!DOCTYPE r [<!ENTITY e 'entity'>]>"
	"<r a='1' b='2'><c>text &e; text</c><d><e/><f g='h'>more</f></d></r>";

static volatile unsigned long parsed, failed;

static void start(void *ud, const XML_Char *name, const XML_Char **atts)
{
	(void)ud; (void)name; (void)atts;
}

static void *work(void *arg)
{
	(void)arg;
	for (;;) {
		XML_Parser p = XML_ParserCreate(NULL);
		XML_SetStartElementHandler(p, start);
		if (XML_Parse(p, doc, (int)strlen(doc), XML_TRUE) == XML_STATUS_OK)
			__atomic_add_fetch(&parsed, 1, __ATOMIC_RELAXED);
		else
			__atomic_add_fetch(&failed, 1, __ATOMIC_RELAXED);
		XML_ParserFree(p);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, NULL, work, NULL);
	}
	for (;;) {
		XML_Parser p = XML_ParserCreate(NULL);
		enum XML_Status s = XML_StopParser(p, XML_FALSE);
		printf("stop-unstarted=%d/%d parsed=%lu failed=%lu\n", (int)s, (int)XML_GetErrorCode(p), parsed, failed);
		XML_ParserFree(p);
		usleep(20000);
	}
}
