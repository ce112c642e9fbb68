FROM alpine
RUN <<EOF
set -e
echo "$HOME"
EOF
RUN <<-"END" cat > /x
	tabbed $NOT
		twice
	END
RUN <<A cat <<B > /out
first
A
second
B
COPY <<EOF /etc/motd
hello
EOF
COPY --chmod=0644 <<one <<two /dir/
1
one
2
two
