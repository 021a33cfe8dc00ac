"""Echo: the smallest Solo service. Deployed by `solo up` as `echo`.

    solo call echo echo '"hello"'           # -> "hello"
    solo call echo info
"""
import solo


class Echo(solo.Service):
    async def echo(self, message):
        return message

    def info(self):
        return {"service": self.context.name, "version": self.context.version, "tenant": self.context.tenant}
