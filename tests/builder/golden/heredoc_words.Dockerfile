FROM alpine
RUN echo '<<EOF' "<<X" cat<<Y
RUN cat <<\ESC <<"Q"W
body $X
ESC
qw
QW
COPY <<EOF <<-EOF2 /d/
# not a comment inside a heredoc
EOF
	  tab then spaces
	EOF2
RUN 3<<IN cat <&3
x
IN
