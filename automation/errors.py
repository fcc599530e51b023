"""Domain errors; the API maps each to its HTTP status with the message as `detail`."""


class ControlPlaneError(Exception):
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ControlPlaneError):
    status = 400


class Unauthorized(ControlPlaneError):
    status = 401


class Forbidden(ControlPlaneError):
    status = 403


class NotFound(ControlPlaneError):
    status = 404


class Conflict(ControlPlaneError):
    status = 409
