"""docs/api.md's "Adding a model" shows docs/examples/small_cnn.cpp, the program the build compiles
and tests/tools/cli_test.cpp runs. This checks that the page shows the file as it is: its includes
and everything from `namespace {` on, line for line."""
import re
import sys

page = open("docs/api.md", encoding="utf-8").read()
source = open("docs/examples/small_cnn.cpp", encoding="utf-8").read().splitlines()

section = page.split("## Adding a model", 1)
if len(section) != 2:
    sys.exit("docs/api.md: no section '## Adding a model'")
blocks = re.findall(r"```cpp\n(.*?)```", section[1], re.S)
if not blocks:
    sys.exit("docs/api.md: 'Adding a model' shows no C++ code")
shown = blocks[0].splitlines()

includes = [line for line in source if line.startswith("#include")]
body = source[source.index("namespace {"):]
expected = includes + [""] + body
if shown != expected:
    for number, (a, b) in enumerate(zip(shown, expected), 1):
        if a != b:
            sys.exit(f"docs/api.md: 'Adding a model' differs from docs/examples/small_cnn.cpp at shown line "
                     f"{number}:\n  page: {a}\n  file: {b}")
    sys.exit(f"docs/api.md: 'Adding a model' shows {len(shown)} lines, the file's code has {len(expected)}")
print("docs/api.md shows docs/examples/small_cnn.cpp as it is")
