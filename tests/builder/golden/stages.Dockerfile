FROM alpine AS a
FROM a AS b
from b
run echo lower
