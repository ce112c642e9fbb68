/* A tiny command-line greeter, linked statically so it runs in an empty image. */
#include <stdio.h>
#include <string.h>

#ifndef VERSION
#define VERSION "dev"
#endif

int main(int argc, char **argv)
{
    const char *who = argc > 1 ? argv[1] : "nobody";
    size_t n = strlen(who);
    printf("hello, %s (%zu letters, greeter %s)\n", who, n, VERSION);
    return 0;
}
