"""`python -m taskloom`: the same command line as `taskloom`."""

from taskloom.cli import main

main()
