from flask_wtf import FlaskForm
from wtforms import SubmitField, TextAreaField
from wtforms.validators import DataRequired, Length


class ExplainErrorForm(FlaskForm):
    raw_error = TextAreaField(
        "Meta error",
        validators=[
            DataRequired(message="Paste an error: a JSON response, a log line or an exception message."),
            Length(max=20000, message="Paste at most 20,000 characters."),
        ],
    )
    submit = SubmitField("Explain")
