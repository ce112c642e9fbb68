# escape=`

FROM mcr.microsoft.com/windows
RUN dir c:\ `
    && echo done
COPY C:\src\ C:\dst\
