FROM alpine

FROBNICATE now
