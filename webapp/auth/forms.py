from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length, ValidationError

from webapp.services.accounts import CONTROL_CHARACTERS_MESSAGE, has_control_characters


def no_control_characters(form, field) -> None:
    """Refuse CR, LF and other control characters in an email field (mail header injection)."""
    if field.data and has_control_characters(field.data.strip()):
        raise ValidationError(CONTROL_CHARACTERS_MESSAGE)


class LoginForm(FlaskForm):
    email = EmailField(
        "Email", validators=[DataRequired(message="Enter your email."), Length(max=254), no_control_characters]
    )
    password = PasswordField("Password", validators=[DataRequired(message="Enter your password."), Length(max=200)])
    next = HiddenField()
    submit = SubmitField("Log in")


class LogoutForm(FlaskForm):
    submit = SubmitField("Log out")


class ChangePasswordForm(FlaskForm):
    current_password = PasswordField(
        "Current password", validators=[DataRequired(message="Enter your current password."), Length(max=200)]
    )
    new_password = PasswordField(
        "New password", validators=[DataRequired(message="Choose a new password."), Length(max=200)]
    )
    confirm_password = PasswordField(
        "Repeat the new password",
        validators=[
            DataRequired(message="Repeat the new password."),
            EqualTo("new_password", "The two new passwords differ."),
        ],
    )
    submit = SubmitField("Change password")
