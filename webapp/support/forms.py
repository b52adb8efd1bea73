from flask_wtf import FlaskForm
from wtforms import PasswordField, RadioField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # new in WTForms 3.3; its stubs are 3.2
from wtforms.validators import DataRequired, Length

from webapp.models import LoginPath


class ExplainErrorForm(FlaskForm):
    raw_error = TextAreaField(
        "Meta error",
        validators=[
            DataRequired(message="Paste an error: a JSON response, a log line or an exception message."),
            Length(max=20000, message="Paste at most 20,000 characters."),
        ],
    )
    # The advice differs by path (Page roles and the 90-day window are Facebook Login matters).
    path = RadioField(
        "How the shop connected",
        choices=[
            SelectChoice(LoginPath.INSTAGRAM.value, "Instagram Login"),
            SelectChoice(LoginPath.FACEBOOK.value, "Facebook Login"),
        ],
        default=LoginPath.INSTAGRAM.value,
        validate_choice=True,
    )
    submit = SubmitField("Explain")


class ImpersonateForm(FlaskForm):
    reason = TextAreaField(
        "Reason (ticket number, what the merchant asked)",
        validators=[DataRequired(message="Give a reason; it is kept in the audit log."), Length(max=500)],
    )
    password = PasswordField(
        "Your password", validators=[DataRequired(message="Enter your own password to confirm it is you.")]
    )
    submit = SubmitField("View as merchant")
