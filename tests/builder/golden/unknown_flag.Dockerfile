FROM alpine
COPY --frm=builder a b
