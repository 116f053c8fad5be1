"""What runs models over test sets and writes reports: mt compare (compare/), mt explore's data,
mt align's file job (align_files), mt evaluate, the demo, and the checks of what a command may write."""
